"""The servers `make servers` started for a workspace: their URLs in `<workspace>/servers/urls.json`.

One file, read by everything that needs a server: a command choosing its Prefect API,
and any flow, wherever it runs (the command line, a served deployment, a worker), choosing
the MLflow tracking server that serves its workspace's store. A server is used only while
it answers its health check.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from tinylm.storage.layout import servers_file

_LOG = logging.getLogger(__name__)


def answers(health_url: str, timeout: float = 2.0) -> bool:
    """Whether a server answers its health check now."""
    try:
        with urllib.request.urlopen(health_url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def running_server(workspace: str | Path, key: str) -> str | None:
    """The URL recorded under `key` (`prefect_api_url`, `mlflow_tracking_uri`) while its server answers, else None.
    A damaged file is said, not skipped in silence: the command then runs without the servers."""
    path = servers_file(workspace)
    if not path.is_file():
        return None
    try:
        url = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError) as error:
        _LOG.warning(
            "%s is unreadable (%s): not using the servers it names; `make servers` writes it again", path, error
        )
        return None
    return url if url and answers(f"{url.rstrip('/')}/health") else None
