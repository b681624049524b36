"""An evaluation's MLflow run: nested under the model's training run, keyed by the weights, the data and the settings.

The eval run holds everything (each table as an MLflow table artifact, the data's fingerprints
as tags, so models are compared on the same bytes); the headline numbers are also logged to
the training run itself, at its checkpoint's step, so the runs list and MLflow's comparison
view rank models by them without opening the nested runs.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param

from tinylm.tracking.store import FINGERPRINT_TAG, client, ending, finished_run, flatten_params, interrupted_work

_METRIC_UNSAFE = re.compile(r"[^\w\-. :/]")


def metric_name(*parts: str) -> str:
    """An MLflow metric name from free text (file names, task names): what MLflow refuses becomes `_`."""
    return _METRIC_UNSAFE.sub("_", "/".join(parts))


def finished_eval(experiment_id: str, key: str) -> str | None:
    run = finished_run(experiment_id, key)
    return run.info.run_id if run is not None else None


@contextmanager
def eval_run(experiment_id: str, key: str, params: dict[str, Any], tags: dict[str, str]) -> Iterator[str]:
    """The run of this evaluation (its settings as params), FINISHED when the block ends, FAILED if it raises, KILLED
    if it is cancelled. One an error, a kill or a cancel left behind is taken up again: results are logged at the end,
    so it
    holds no half result."""
    tracking = client()
    interrupted = interrupted_work(experiment_id, key)
    if interrupted:
        run_id = interrupted[0]
        tracking.update_run(run_id, status="RUNNING")
    else:
        run_id = tracking.create_run(experiment_id, run_name="eval", tags={FINGERPRINT_TAG: key} | tags).info.run_id
        tracking.log_batch(
            run_id, params=[Param(name, value[:6000]) for name, value in flatten_params("", params).items()]
        )
    with ending(run_id):
        yield run_id


def log_results(
    run_id: str, model_run_id: str | None, step: int, metrics: dict[str, float], tables: dict[str, list[dict]]
) -> None:
    """Metrics to the eval run and to the model's run; each table as an MLflow table (the Evaluation view reads
    them)."""
    tracking = client()
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    for target in filter(None, (run_id, model_run_id)):
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            tracking.log_batch(target, metrics=batch[start : start + 1000])
    for name, rows in tables.items():
        if rows:
            tracking.log_table(
                run_id, {column: [row.get(column) for row in rows] for column in rows[0]}, f"eval/{name}.json"
            )


def log_summary(run_id: str, summary: dict[str, Any]) -> None:
    client().log_dict(run_id, summary, "eval/results.json")


def eval_results(run_id: str) -> dict[str, Any]:
    """What a finished evaluation found, read back from its run (a repeated evaluation returns it)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = client().download_artifacts(run_id, "eval/results.json", scratch)
        return json.loads(Path(path).read_text(encoding="utf-8"))
