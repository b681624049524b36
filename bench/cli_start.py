"""How fast the command line answers where people touch it first: help, and a refused setting.

    .venv/bin/python bench/cli_start.py [--quick]

Each command runs as a user runs it (the console script, a fresh process), fastest of five
(two with --quick). The reference is the same parser when it pays for what the commands
import when they run, as it did before the registry named every part by import path: each
registered command's flow, handler and settings imported first (torch, mlflow, prefect,
fastapi). The ratio is the reference's time over tinylm's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _cli import bench_parser

TINYLM = Path(sys.executable).parent / "tinylm"
EAGER = """
import sys
from tinylm.registry import commands, load
for entry in commands():
    for part in (entry.flow, entry.handler, entry.config):
        if part:
            load(part)
from tinylm.cli import main
sys.exit(main(sys.argv[1:]))
"""
COMMANDS = {
    "tinylm --help": ["--help"],
    "tinylm dpo --help": ["dpo", "--help"],
    "tinylm train --learning-rate -1 (refused)": ["train", "--shards", "x", "--learning-rate", "-1"],
    "tinylm corpus, a rule that does not load (refused)": [
        *("corpus", "--input", "x", "--output", "y"),
        *("--filters.rules", "length", "nowhere.py:Rule"),
    ],
}


def fastest(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    repeats = 2 if args.quick else 5
    print(f"{'command':52} {'tinylm':>8} {'eager imports':>14} {'ratio':>7}")
    for name, arguments in COMMANDS.items():
        ours = fastest([str(TINYLM), *arguments], repeats)
        eager = fastest([sys.executable, "-c", EAGER, *arguments], repeats)
        print(f"{name:52} {ours:7.2f}s {eager:13.2f}s {eager / ours:6.1f}x")


if __name__ == "__main__":
    main()
