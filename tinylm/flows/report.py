"""What a stage shows in the Prefect UI: a table of its numbers, a summary linking its MLflow run, and progress.

MLflow is imported where a run is logged, not here: `tinylm extract` shows progress and a table
and logs no run, and importing MLflow would cost it seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL

import tinylm.flows.session.run_logs  # noqa: F401  (tinylm's log lines to the run, a cancel logged as one)
from tinylm.flows.session.environment import TEMPORARY_MARK
from tinylm.tracking.retry import retrying


def _rows(stats: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    rows = []
    for key, value in stats.items():
        if isinstance(value, dict):
            rows.extend(_rows(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            rows.append({"statistic": f"{prefix}{key}", "value": str(value)})
    return rows


def run_name(stage: str, parameter: str | None = None) -> Callable[[], str]:
    """A flow's `flow_run_name`: its runs are named after the stage and what it works on (`corpus-demo`,
    `train-e2e`), not Prefect's random words (`train / masterful-goshawk`). `parameter` names a path parameter
    (its last part is used) or a config with a `name`."""

    def name() -> str:
        value = flow_run.parameters.get(parameter) if parameter else None
        if value is not None and not isinstance(value, str):
            value = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
        label = Path(str(value)).name if value else ""
        return f"{stage}-{label}" if label else stage

    return name


def publish_stats(stage: str, stats: dict[str, Any], summary: str = "") -> None:
    """A table of the stage's numbers, and a markdown note when there is more to say."""
    create_table_artifact(key=f"{stage}-stats", table=_rows(stats), description=f"{stage} statistics")
    if summary:
        create_markdown_artifact(key=f"{stage}-summary", markdown=summary, description=f"{stage} summary")


def prefect_link_tags() -> dict[str, str]:
    """The flow run's page in the Prefect UI, as tags for an MLflow run (the note shows as its description).

    Built as the engine's own "View at" log line builds it: `prefect.runtime.flow_run.ui_url`
    points at /flow-runs/flow-run/, a page the Prefect 3 UI does not have.
    """
    ui = PREFECT_UI_URL.value()
    if not ui or flow_run.id is None or TEMPORARY_MARK in os.environ:  # a temporary server's pages end with the command
        return {}
    url = f"{ui}/runs/flow-run/{flow_run.id}"
    return {"tinylm.prefect_flow_run": url, "mlflow.note.content": f"Prefect flow run [{flow_run.name}]({url})"}


def report_stage(
    stage: str,
    stats: dict[str, Any],
    params: dict[str, Any],
    workspace: str,
    started: float,
    artifacts: str | Path | None = None,
) -> str:
    """Log a data stage's run to MLflow (dated from `started`, when the stage began), then publish its table
    and a summary that links to the run."""
    from tinylm.tracking.stage_runs import log_stage_run  # MLflow, imported by the stages that log to it
    from tinylm.tracking.store import run_link

    run_id = retrying(lambda: log_stage_run(stage, stats, params, workspace, started, prefect_link_tags(), artifacts))
    publish_stats(
        stage,
        stats,
        summary=f"**{stage}** finished in {time.time() - started:.1f} s. MLflow run {run_link(workspace, run_id)}",
    )
    return run_id


def report_reused(stage: str, output: str, workspace: str) -> dict[str, Any]:
    """Say that a stage's output was reused (same inputs and config) and which MLflow run made it; returns
    what the caller adds to its result, so a pipeline run can be tagged with the runs it reused."""
    from tinylm.tracking.stage_runs import stage_run_of
    from tinylm.tracking.store import run_link

    run_id = retrying(lambda: stage_run_of(stage, output, workspace))
    made_by = f"MLflow run {run_link(workspace, run_id)}" if run_id else "an earlier run"
    message = (
        f"**{stage}** reused {made_by}: `{output}` already holds this stage's output for the same inputs and config."
    )
    get_run_logger().info("%s: reused run %s (%s)", stage, run_id or "from before", output)
    create_markdown_artifact(key=f"{stage}-summary", markdown=message, description=f"{stage} summary")
    return {"reused": True, "reused_run": run_id}


# Callables told (stage, share done) whenever a stage reports progress in this process:
# the command line's progress bars listen here.
PROGRESS_LISTENERS: list[Callable[[str, float], None]] = []


class StageProgress:
    """A long stage's progress: a Prefect progress artifact in the UI, and the listeners in this process."""

    def __init__(self, stage: str, description: str) -> None:
        self.stage = stage
        self.artifact = create_progress_artifact(0.0, key=f"{stage}-progress", description=description)

    def __call__(self, done: float) -> None:
        update_progress_artifact(self.artifact, round(100 * done, 2))
        for listener in PROGRESS_LISTENERS:
            listener(self.stage, done)
