"""The Prefect and MLflow settings a tinylm command runs with, unless the user set them.

Set before Prefect is first imported: Prefect reads its settings from the environment.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

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
    # tinylm's own log lines (training progress) go to the Prefect run's logs and the console.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tinylm",
}
SERVERS_FILE = Path("servers") / "urls.json"


def apply_defaults() -> None:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Prefect hands its handlers to the extra loggers but not a level, and the root logger's is WARNING.
    logging.getLogger("tinylm").setLevel(logging.INFO)


def use_running_servers(workspace: str | Path) -> bool:
    """Point this process at the servers `make servers` started for `workspace`, when they answer.

    Saves each command the start of Prefect's temporary server (most of a small command's
    time). Settings the user exported win; returns whether the servers are used.
    """
    path = Path(workspace) / SERVERS_FILE
    if "PREFECT_API_URL" in os.environ or not path.is_file():
        return False
    urls = json.loads(path.read_text(encoding="utf-8"))
    if not api_answers(urls["prefect_api_url"]):
        return False
    os.environ["PREFECT_API_URL"] = urls["prefect_api_url"]
    os.environ.setdefault("MLFLOW_TRACKING_URI", urls["mlflow_tracking_uri"])
    return True


def api_answers(api_url: str) -> bool:
    """Whether a Prefect API answers its health check now."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def startup_timeout() -> float:
    """Seconds a temporary API server may take to start: Prefect's own setting, which tinylm raises."""
    name = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    return float(os.environ.get(name, DEFAULTS[name]))
