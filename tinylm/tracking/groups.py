"""Grouped MLflow runs: a pipeline or a refresh is one run with its stages' runs nested under it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from tinylm.tracking.store import client, use_experiment

_GROUP_RUN: ContextVar[str | None] = ContextVar("tinylm_group_run", default=None)


def group_tags() -> dict[str, str]:
    """Tags that nest a run under the pipeline or refresh run enclosing it, if any."""
    parent = _GROUP_RUN.get()
    return {"mlflow.parentRunId": parent} if parent else {}


@contextmanager
def run_group(name: str, workspace: str | Path, experiment: str = "tinylm", tags: dict[str, str] | None = None) -> Iterator[str]:
    """An MLflow run that every stage run started inside the block nests under (the MLflow UI shows
    a pipeline or a refresh as one expandable row). Created through the client, so it is never
    the fluent "active run" that the stages' own `start_run` calls would collide with."""
    experiment_id = use_experiment(experiment, workspace)
    tracking = client()
    run = tracking.create_run(experiment_id, run_name=name, tags={"tinylm.stage": name} | (tags or {}))
    token = _GROUP_RUN.set(run.info.run_id)
    status = "FAILED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    finally:
        _GROUP_RUN.reset(token)
        tracking.set_terminated(run.info.run_id, status)
