"""MLflow connection: the embedded default store, or whatever MLFLOW_TRACKING_URI names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient


def tracking_uri(workspace: str | Path) -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store inside the workspace."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(workspace) / 'mlflow.db').resolve()}"


def use_experiment(name: str, workspace: str | Path) -> str:
    """Point MLflow at the tracking store and return the experiment's id, creating it if new.

    With the embedded store, artifacts go under the workspace (not the current directory),
    so one folder holds everything a run produced.
    """
    uri = tracking_uri(workspace)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = None
    if uri.startswith("sqlite:") and "MLFLOW_TRACKING_URI" not in os.environ:
        artifacts = (Path(workspace) / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=artifacts)


def flatten_params(prefix: str, value: Any) -> dict[str, str]:
    """Nested config dict to MLflow's flat `a.b.c` params."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(flatten_params(f"{prefix}.{key}" if prefix else str(key), item))
        return flat
    return {prefix: str(value)}


def client() -> MlflowClient:
    return MlflowClient()
