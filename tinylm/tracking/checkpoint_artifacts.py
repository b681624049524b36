"""Checkpoints as MLflow artifacts: uploaded with the completion marker last, the newest complete one found and fetched.

A remote checkpoint without its `checkpoint.json` was cut off mid-upload and is not complete.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from tinylm.storage.checkpoints import META_FILE
from tinylm.tracking.store import client

ARTIFACT_ROOT = "checkpoints"


def log_checkpoint(directory: Path, name: str) -> None:
    """Upload to the active MLflow run, the completion marker last."""
    artifact_path = f"{ARTIFACT_ROOT}/{name}"
    for item in sorted(directory.iterdir()):
        if item.name != META_FILE:
            mlflow.log_artifact(str(item), artifact_path)
    mlflow.log_artifact(str(directory / META_FILE), artifact_path)


def newest_remote_checkpoint(run_id: str) -> str | None:
    """Artifact path of the run's newest complete checkpoint, or None if it has none."""
    tracking = client()
    names = sorted((item.path for item in tracking.list_artifacts(run_id, ARTIFACT_ROOT) if item.is_dir), reverse=True)
    for path in names:
        if any(item.path.endswith(META_FILE) for item in tracking.list_artifacts(run_id, path)):
            return path
    return None


def download_checkpoint(run_id: str, destination: Path, name: str | None = None) -> Path | None:
    """The run's checkpoint `name` (None: its newest complete one), downloaded; None when the run has no such
    checkpoint."""
    path = newest_remote_checkpoint(run_id) if name is None else f"{ARTIFACT_ROOT}/{name}"
    if path is None or (
        name is not None and not any(item.path.endswith(META_FILE) for item in client().list_artifacts(run_id, path))
    ):
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(destination)))
