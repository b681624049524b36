"""Print the MLflow runs list of a workspace's experiment on a tracking server (`make servers` runs this).

    python scripts/mlflow_runs_url.py http://127.0.0.1:5000 workspace

MLflow's experiments list opens an experiment in its GenAI overview (with a pop-up); the link
that shows the runs names the experiment's id and asks for the model-training view. Waits for
the server to answer, and creates the experiment (tagged for model training) if it is new.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tinylm.storage.servers import answers  # noqa: E402  (after putting the checkout on the path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="the tracking server's URL")
    parser.add_argument("workspace", help="the workspace the server serves")
    parser.add_argument("--experiment", default="tinylm")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    while not answers(f"{args.server.rstrip('/')}/health"):
        if time.monotonic() > deadline:
            print(f"{args.server} did not answer within {args.timeout:g} s: see {args.workspace}/servers/mlflow.log", file=sys.stderr)
            return 1
        time.sleep(1)
    os.environ["MLFLOW_TRACKING_URI"] = args.server
    from tinylm.tracking.store import runs_url, use_experiment

    print(runs_url(args.server, use_experiment(args.experiment, args.workspace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
