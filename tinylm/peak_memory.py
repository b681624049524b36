"""Peak resident memory of a block of work, sampled, so a stage can report it against its budget."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """Current RSS (Linux /proc), or the lifetime peak where /proc is absent."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def peak_resident(interval: float = 0.02) -> Iterator[dict[str, int]]:
    """Yields a dict that holds, once the block ends, `before` and `peak` RSS in bytes.

    The process's lifetime peak (`ru_maxrss`) cannot be reset, so an earlier stage in the
    same flow process would hide this one's; a sampling thread sees this block alone.
    """
    result = {"before": resident_bytes(), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while True:
            result["peak"] = max(result["peak"], resident_bytes())
            if stop.wait(interval):
                return

    sampler = threading.Thread(target=sample, name="peak-resident", daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result["peak"] = max(result["peak"], resident_bytes())
