"""The servers `make servers` started for a workspace: their URLs in `<workspace>/servers/urls.json`.

One file, read by everything that needs a server: a command choosing its Prefect API,
and any flow, wherever it runs (the command line, a served deployment, a worker), choosing
the MLflow tracking server that serves its workspace's store. A server is used only while
it answers its health check.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

SERVERS_FILE = Path("servers") / "urls.json"


def answers(health_url: str, timeout: float = 2.0) -> bool:
    """Whether a server answers its health check now."""
    try:
        with urllib.request.urlopen(health_url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _recorded(workspace: str | Path, key: str) -> str | None:
    path = Path(workspace) / SERVERS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError):
        return None


def running_prefect_api(workspace: str | Path) -> str | None:
    """The Prefect API URL of the workspace's running server, or None."""
    url = _recorded(workspace, "prefect_api_url")
    return url if url and answers(f"{url.rstrip('/')}/health") else None


def running_mlflow_server(workspace: str | Path) -> str | None:
    """The tracking URI of the MLflow server serving the workspace's store, or None."""
    url = _recorded(workspace, "mlflow_tracking_uri")
    return url if url and answers(f"{url.rstrip('/')}/health") else None
