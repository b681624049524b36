"""The benchmarks' shared command line (not a benchmark itself: `make bench` skips `_*.py`)."""

from __future__ import annotations

import argparse


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's docstring as its help, and `--quick`: the same comparison on less data with fewer repeats, which
    `make bench QUICK=1` runs to check that every benchmark works, in minutes; its figures are not the ones to quote."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a CI-sized run: less data, fewer repeats")
    return parser
