"""Write prefect.yaml, the work-pool deployments, from the registry (tinylm/registry.py).

.venv/bin/python scripts/prefect_yaml.py          # write it
.venv/bin/python scripts/prefect_yaml.py --check  # fail if it is stale (a test runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from _generated import write_or_check

from tinylm.flows.deployments import prefect_yaml

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "prefect.yaml"
    sys.exit(write_or_check(__doc__, target, prefect_yaml, "scripts/prefect_yaml.py"))
