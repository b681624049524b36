"""Timing helper shared by the benchmarks (not a benchmark itself: `make bench` skips `_*.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of `runs` wall times: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)
