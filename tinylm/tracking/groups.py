"""Grouped MLflow runs: a pipeline or a refresh is one run with its stages' runs nested under it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from tinylm.tracking.locks import work_lock
from tinylm.tracking.store import abandon, client, ending, flatten_params, interrupted_run_ids, use_experiment

GROUP_KEY_TAG = "tinylm.group_key"
_GROUP_RUN: ContextVar[str | None] = ContextVar("tinylm_group_run", default=None)


def group_tags() -> dict[str, str]:
    """Tags that nest a run under the pipeline or refresh run enclosing it, if any."""
    parent = _GROUP_RUN.get()
    return {"mlflow.parentRunId": parent} if parent else {}


@contextmanager
def run_group(
    name: str,
    workspace: str | Path,
    key: str,
    experiment: str = "tinylm",
    tags: dict[str, str] | None = None,
    restart: bool = False,
) -> Iterator[str]:
    """An MLflow run that every stage run started inside the block nests under (the MLflow UI shows
    a pipeline or a refresh as one expandable row). Created through the client, so it is never
    the fluent "active run" that the stages' own `start_run` calls would collide with.

    `key` says what the group does (a pipeline's config and inputs, a refresh's batch): a group
    with the same key that a kill or an error interrupted is continued, so a re-run pipeline
    shows as one run with its stages; with `restart` that run is marked KILLED instead. The group's
    lock (locks.py) is held throughout: a second command with the same key waits for this one
    instead of taking its live run for an interrupted one.
    """
    experiment_id = use_experiment(experiment, workspace)
    tracking = client()
    with work_lock(workspace, f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}", name):
        interrupted = _interrupted_groups(experiment_id, name, key)
        for run_id in interrupted if restart else []:
            abandon(run_id, "restart")
        if interrupted and not restart:
            run_id = interrupted[0]
            tracking.update_run(run_id, status="RUNNING")
            tracking.set_tag(run_id, "tinylm.resumed", "true")
        else:
            tags = {"tinylm.stage": name, GROUP_KEY_TAG: key} | (tags or {})
            run_id = tracking.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        token = _GROUP_RUN.set(run_id)
        try:
            with ending(run_id):
                yield run_id
        finally:
            _GROUP_RUN.reset(token)


def _interrupted_groups(experiment_id: str, name: str, key: str) -> list[str]:
    """Group runs of this name and key left RUNNING (killed), FAILED or cancelled, newest first."""
    return interrupted_run_ids(experiment_id, f"tags.`tinylm.stage` = '{name}' and tags.`{GROUP_KEY_TAG}` = '{key}'")


def log_run_summary(run_id: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> None:
    """What a group run did, on the group run itself: its whole config as params, and its totals as metrics.

    Through the client in one batch, so the group run (never the fluent active run) stays open until its block ends.
    A continued run logs the same params again, which MLflow accepts.
    """
    now = int(time.time() * 1000)
    client().log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, value) for key, value in flatten_params("", params).items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
