"""A training run's identity in MLflow: its fingerprint, the finished run it may repeat, and how it starts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import mlflow

from tinylm.config import TrainConfig
from tinylm.storage.manifest import fingerprint, manifest_hash
from tinylm.tracking.groups import group_tags
from tinylm.tracking.store import client, flatten_params, use_experiment
from tinylm.training.distributed import Ranks, from_main

FINGERPRINT_TAG = "tinylm.fingerprint"


def train_fingerprint(data_dir: str | Path, config: TrainConfig) -> str:
    """What decides a training run's result: its data (by manifest hash) and its config, resume aside."""
    return fingerprint("train", config.model_dump(mode="json", exclude={"resume_run_id"}), {"data": manifest_hash(data_dir)})


def finished_run(experiment: str, workspace: str | Path, expected: str) -> dict | None:
    """The result of a finished run with the same fingerprint: re-running the same training does no work."""
    experiment_id = use_experiment(experiment, workspace)
    runs = client().search_runs(
        [experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{expected}' and attributes.status = 'FINISHED'", max_results=1
    )
    if not runs:
        return None
    run = runs[0]
    return {
        "run_id": run.info.run_id,
        "steps": int(run.data.params["total_steps"]),
        "final_loss": run.data.metrics["loss"],
        "parameters": int(run.data.params["parameters"]),
        "reused": True,
    }


def run_tags(tags: dict[str, str] | None, config: TrainConfig, expected: str) -> dict[str, str]:
    """The caller's tags, the run's fingerprint, and the run this one starts from (MLflow links SFT to its pretraining)."""
    starts_from = {"tinylm.init_run_id": config.init_run_id} if config.init_run_id else {}
    return group_tags() | (tags or {}) | {FINGERPRINT_TAG: expected} | starts_from


def start_run(config: TrainConfig, workspace: str | Path, tags: dict[str, str] | None, ranks: Ranks, expected: str) -> tuple[Any, str]:
    """The MLflow run (rank 0), or a stand-in context on the other ranks; and the run id every rank shares."""
    if not ranks.is_main:
        return contextlib.nullcontext(), from_main(ranks, None)
    experiment_id = use_experiment(config.experiment, workspace)
    run = (
        mlflow.start_run(run_id=config.resume_run_id)
        if config.resume_run_id
        else mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name, tags=run_tags(tags, config, expected))
    )
    return run, from_main(ranks, run.info.run_id)


def log_run_params(config: TrainConfig, details: dict[str, Any]) -> None:
    """The whole config as flat params, and what the run derived from it (size, steps, data)."""
    mlflow.log_params(flatten_params("", config.model_dump(mode="json")) | {key: str(value) for key, value in details.items()})
