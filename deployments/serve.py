"""Serve every tinylm flow from one process, so each can be triggered from the Prefect UI.

Run from the repository root with a Prefect server reachable (`make servers`, then
`PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py`). The
deployments themselves are built in `tinylm/flows/deployments.py`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinylm.flows.session.environment import apply_defaults  # noqa: E402  (after putting the checkout on the path)

apply_defaults()  # before Prefect is imported: it reads its settings from the environment

from tinylm.flows.deployments import main  # noqa: E402

if __name__ == "__main__":
    main()
