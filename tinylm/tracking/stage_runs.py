"""A data stage's MLflow run: its counts as metrics, its whole stats as JSON, small outputs as artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param

from tinylm.tracking.groups import group_tags
from tinylm.tracking.store import client, ending, flatten_params, newest_runs, use_experiment


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


def log_stage_run(
    stage: str,
    stats: dict[str, Any],
    params: dict[str, Any],
    workspace: str,
    started: float,
    tags: dict[str, str] | None = None,
    artifacts: str | Path | None = None,
) -> str:
    """One MLflow run per data stage: its counts as metrics, the whole stats as a JSON artifact,
    and the stage's output directory (when small enough to matter, like a tokenizer) under `stage/`.

    Logged when the stage is done (a killed stage leaves no half run), but dated from `started`
    (seconds since the epoch), so the run's duration in the MLflow UI is the stage's.
    """
    experiment_id = use_experiment("tinylm", workspace)
    tracking = client()
    run_tags = {"tinylm.stage": stage} | group_tags() | (tags or {})
    run_id = tracking.create_run(
        experiment_id, start_time=int(started * 1000), tags=run_tags, run_name=stage
    ).info.run_id
    with ending(run_id):
        now = int(time.time() * 1000)
        tracking.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in numeric_metrics(stats).items()],
            params=[Param(key, value) for key, value in flatten_params("", params).items()],
        )
        tracking.log_dict(run_id, stats, "stats.json")
        if artifacts is not None:
            tracking.log_artifacts(run_id, str(artifacts), stage)
    return run_id


def stage_run_of(stage: str, output: str, workspace: str) -> str | None:
    """The newest finished run of `stage` that wrote `output`: the run a reused output came from."""
    experiment_id = use_experiment("tinylm", workspace)
    filters = f"tags.`tinylm.stage` = '{stage}' and params.output = '{output}' and attributes.status = 'FINISHED'"
    runs = newest_runs(experiment_id, filters, max_results=1)
    return runs[0].info.run_id if runs else None
