"""Stage statistics: summed from per-file task results, published as Prefect artifacts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact

from tinylm.tracking.store import flatten_params, group_tags, retrying, run_link, use_experiment


def merge_counts(results: list[dict[str, Any]], field: str) -> dict[str, int]:
    """Sum one `{reason: count}` field over per-file results."""
    total: Counter[str] = Counter()
    for result in results:
        total.update(result.get(field, {}))
    return dict(sorted(total.items()))


def extract_stats(results: list[dict]) -> dict[str, Any]:
    return {
        "units": len(results),
        "records": sum(r["records"] for r in results),
        "documents": sum(r["documents"] for r in results),
        "skipped": merge_counts(results, "skipped"),
        "lines_with_replaced_bytes": sum(r["lines_with_replaced_bytes"] for r in results),
    }


def corpus_stats(extracted: dict, cleaned: list[dict], deduped: dict) -> dict[str, Any]:
    return {
        "extracted": extracted,
        "converted": sum(r["converted"] for r in cleaned),
        "filtered": merge_counts(cleaned, "dropped"),
        "exact_duplicates": deduped["exact_duplicates"],
        "near_duplicates": deduped["near_duplicates"],
        "near_duplicates_of_index": deduped["near_duplicates_of_index"],
        "near_duplicate_clusters": deduped["near_duplicate_clusters"],
        "documents_in": deduped["documents"] + sum(sum(r["dropped"].values()) for r in cleaned),
        "kept": deduped["kept"],
    }


def _rows(stats: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    rows = []
    for key, value in stats.items():
        if isinstance(value, dict):
            rows.extend(_rows(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            rows.append({"statistic": f"{prefix}{key}", "value": str(value)})
    return rows


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


def log_stats_to_mlflow(
    stage: str, stats: dict[str, Any], params: dict[str, Any], workspace: str, artifacts: str | Path | None = None
) -> str:
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


def publish_stats(stage: str, stats: dict[str, Any], summary: str = "") -> None:
    """A table of the stage's numbers, and a markdown note when there is more to say."""
    create_table_artifact(key=f"{stage}-stats", table=_rows(stats), description=f"{stage} statistics")
    if summary:
        create_markdown_artifact(key=f"{stage}-summary", markdown=summary, description=f"{stage} summary")


def report_stage(
    stage: str, stats: dict[str, Any], params: dict[str, Any], workspace: str, artifacts: str | Path | None = None
) -> str:
    """Log a data stage's run to MLflow, then publish its table and a summary that links to the run."""
    run_id = retrying(lambda: log_stats_to_mlflow(stage, stats, params, workspace, artifacts))
    publish_stats(stage, stats, summary=f"**{stage}** finished. MLflow run {run_link(workspace, run_id)}")
    return run_id


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
