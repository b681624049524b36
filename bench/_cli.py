"""The benchmarks' shared command line (not a benchmark itself: `make bench` skips `_*.py`)."""

from __future__ import annotations

import argparse

from tinylm.flows.session.environment import apply_defaults


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's docstring as its help, and `--quick`: the same comparison on less data with fewer repeats, which
    `make bench QUICK=1` runs to check that every benchmark works, in minutes; its figures are not the ones to quote.

    Applies the Prefect and MLflow settings tinylm's commands run with, so the flows a benchmark runs in-process
    behave as they do for a user (Prefect's temporary server then reads them when a flow starts it)."""
    apply_defaults()
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a CI-sized run: less data, fewer repeats")
    return parser
