"""A data stage's MLflow run: its counts as metrics, its whole stats as JSON, small outputs as artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow

from tinylm.tracking.groups import group_tags
from tinylm.tracking.store import flatten_params, use_experiment


def numeric_metrics(stats: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested stats dict, flattened to MLflow metric names (`filtered.too_short`)."""
    metrics: dict[str, float] = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            metrics.update(numeric_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)
    return metrics


def log_stage_run(stage: str, stats: dict[str, Any], params: dict[str, Any], workspace: str, artifacts: str | Path | None = None) -> str:
    """One MLflow run per data stage: its counts as metrics, the whole stats as a JSON artifact,
    and the stage's output directory (when small enough to matter, like a tokenizer) under `stage/`."""
    experiment_id = use_experiment("tinylm", workspace)
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags={"tinylm.stage": stage} | group_tags()) as run:
        mlflow.log_params(flatten_params("", params))
        mlflow.log_metrics(numeric_metrics(stats))
        mlflow.log_dict(stats, "stats.json")
        if artifacts is not None:
            mlflow.log_artifacts(str(artifacts), stage)
        return run.info.run_id
