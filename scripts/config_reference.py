"""Write docs/config.md, the configuration reference, from the registered commands' models (tinylm/config_reference.py).

.venv/bin/python scripts/config_reference.py          # write it
.venv/bin/python scripts/config_reference.py --check  # fail if it is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinylm.config_reference import render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--check", action="store_true", help="fail, writing nothing, if the page is not what the models say"
    )
    page = render()
    if parser.parse_args().check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != page:
            print(f"{PAGE} is stale: run .venv/bin/python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
