"""Write docs/config.md, the configuration reference, from the registered commands' models (tinylm/config_reference.py).

.venv/bin/python scripts/config_reference.py          # write it
.venv/bin/python scripts/config_reference.py --check  # fail if it is stale (a test runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from _generated import write_or_check

from tinylm.config_reference import render

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    sys.exit(write_or_check(__doc__, target, render, "scripts/config_reference.py"))
