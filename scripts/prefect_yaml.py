"""Write prefect.yaml, the work-pool deployments, from the registry (tinylm/registry.py).

.venv/bin/python scripts/prefect_yaml.py          # write it
.venv/bin/python scripts/prefect_yaml.py --check  # fail if it is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinylm.flows.deployments import prefect_yaml

FILE = Path(__file__).resolve().parents[1] / "prefect.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail, writing nothing, if the file is stale")
    text = prefect_yaml()
    if parser.parse_args().check:
        if not FILE.exists() or FILE.read_text(encoding="utf-8") != text:
            print(f"{FILE} is stale: run .venv/bin/python scripts/prefect_yaml.py", file=sys.stderr)
            return 1
        return 0
    FILE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
