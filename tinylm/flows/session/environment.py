"""The Prefect and MLflow settings a tinylm command runs with, unless the user set them.

Set before Prefect is first imported: Prefect reads its settings from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinylm.storage.servers import answers, running_server

# Set while a command runs on its own temporary server: its URLs die with the command.
TEMPORARY_MARK = "TINYLM_TEMPORARY_PREFECT_API"

DEFAULTS = {
    # Prefect gives its temporary API server 20 s to start; on a busy 2-core machine that
    # failed about one command in seven.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # No analytics or telemetry: nothing the product needs, and on a busy machine their
    # failures filled the console (`database is locked`, `Failed to send telemetry`).
    # DO_NOT_TRACK is read by Prefect's client and by MLflow's telemetry alike.
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Commands print their result as JSON on stdout; MLflow would print "View run ... at" lines
    # there when a run ends on a tracking server (the summary artifacts link the run instead).
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def apply_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)


def use_running_servers(workspace: str | Path) -> bool:
    """Point this process at the Prefect server `make servers` started for `workspace`, when it answers.

    Saves each command the start of Prefect's temporary server (most of a small command's
    time). An exported PREFECT_API_URL wins; returns whether the running server is used. The
    MLflow server is found by the tracking code itself (tracking/store.py), whatever the Prefect
    API, so runs reach the server that serves the workspace's store even with PREFECT_API_URL exported.
    """
    if "PREFECT_API_URL" in os.environ:
        return False
    api_url = running_server(workspace, "prefect_api_url")
    if api_url is None:
        return False
    os.environ["PREFECT_API_URL"] = api_url
    return True


def api_answers(api_url: str) -> bool:
    """Whether a Prefect API answers its health check now."""
    return answers(f"{api_url}/health")


def startup_timeout() -> float:
    """Seconds a temporary API server may take to start: Prefect's own setting, which tinylm raises."""
    name = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    return float(os.environ.get(name, DEFAULTS[name]))
