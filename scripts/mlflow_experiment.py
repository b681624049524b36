"""Create the workspace's MLflow experiment and print its runs list on the server to come (`make servers` runs this).

    python scripts/mlflow_experiment.py workspace 5000

MLflow's experiments list opens an experiment in its GenAI overview (with a pop-up); the link
that shows the runs names the experiment's id and asks for the model-training view. The
experiment is created in the workspace's SQLite store, tagged for model training, before the
server starts on that store: no waiting for the server, and no two processes creating the
store's tables at once.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", help="the workspace whose store the server will serve")
    parser.add_argument("port", type=int, help="the port the MLflow server listens on")
    parser.add_argument("--experiment", default="tinylm")
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the workspace's own store, whatever this shell points at
    from tinylm.tracking.store import runs_url, use_experiment

    print(runs_url(f"http://127.0.0.1:{args.port}", use_experiment(args.experiment, args.workspace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
