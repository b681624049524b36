"""What the scripts that write a generated file share: write it, or with --check fail if the committed one is stale
(a test runs each with --check). Not a script itself."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(doc: str | None, target: Path, render: Callable[[], str], script: str) -> int:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail, writing nothing, if the file is stale")
    text = render()
    if parser.parse_args().check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is stale: run .venv/bin/python {script}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0
