"""A training run's identity in MLflow: its fingerprint, and which run a training continues, returns or starts.

The same training (same data, same config) is one MLflow run whatever happens to the
process: run again after it finished, it returns that run; run again after it was
killed or failed (a re-run command, a Prefect retry, a deployment re-triggered from the
UI), it continues that run from its newest checkpoint. Only `restart` starts afresh,
and the run it abandons is marked KILLED rather than left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import mlflow

from tinylm.config import TrainConfig
from tinylm.storage.manifest import fingerprint, manifest_hash
from tinylm.tracking.groups import group_tags
from tinylm.tracking.locks import work_lock
from tinylm.tracking.store import (
    FINGERPRINT_TAG,
    abandon,
    ending,
    finished_run,
    flatten_params,
    interrupted_work,
    use_experiment,
)
from tinylm.training.distributed import Ranks, from_main

RESUMED_TAG = "tinylm.resumed_from_step"
# Settings that change how a run is found or checked, or where its nodes meet, never what it computes (every node,
# whatever its node_rank, must agree on the fingerprint).
_NOT_IN_FINGERPRINT = {"resume_run_id", "restart", "verify_shards", "node_rank", "rendezvous"}
log = logging.getLogger(__name__)


def train_fingerprint(data_dir: str | Path, config: TrainConfig) -> str:
    """What decides a training run's result: its data (by manifest hash) and its config, resume aside."""
    return fingerprint(
        "train", config.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT), {"data": manifest_hash(data_dir)}
    )


def finished_training(experiment: str, workspace: str | Path, expected: str) -> dict | None:
    """The result of a finished run of the same training: re-running it does no work."""
    run = finished_run(use_experiment(experiment, workspace), expected)
    if run is None:
        return None
    return {
        "run_id": run.info.run_id,
        "steps": int(run.data.params["total_steps"]),
        "final_loss": run.data.metrics["loss"],
        "parameters": int(run.data.params["parameters"]),
        "reused": True,
        "resumed_from_step": None,
    }


def choose_run(config: TrainConfig, workspace: str | Path, expected: str) -> tuple[dict | None, str | None]:
    """What this training does: return a finished run (first), or continue a run (second), or neither (a new run).

    `resume_run_id` names the run to continue; otherwise an interrupted run of the same
    training is continued, unless `restart` asks for a new one and abandons it.
    """
    if config.resume_run_id:
        return None, config.resume_run_id
    if config.restart:
        for run_id in interrupted_work(use_experiment(config.experiment, workspace), expected):
            abandon(run_id, "restart")
            log.warning("run %s abandoned by restart: marked KILLED", run_id)
        return None, None
    earlier = finished_training(config.experiment, workspace, expected)
    if earlier is not None:
        return earlier, None
    interrupted = interrupted_work(use_experiment(config.experiment, workspace), expected)
    return None, interrupted[0] if interrupted else None


def training_lock(workspace: str | Path, expected: str) -> contextlib.AbstractContextManager[None]:
    """Only one process trains a given run at a time: a second one waits, then finds the run finished."""
    return work_lock(workspace, f"train-{expected[:16]}", "training")


def run_tags(tags: dict[str, str] | None, config: TrainConfig, expected: str) -> dict[str, str]:
    """The caller's tags, the run's fingerprint, and the runs this one comes from: where it starts (MLflow links
    SFT to its pretraining), its DPO reference, its teacher."""
    sources = {"init_run_id": config.init_run_id}
    sources |= {name: getattr(config, name, None) for name in ("reference_run_id", "teacher_run_id")}
    lineage = {f"tinylm.{name}": run_id for name, run_id in sources.items() if run_id}
    return group_tags() | (tags or {}) | {FINGERPRINT_TAG: expected} | lineage


def start_run(
    config: TrainConfig,
    workspace: str | Path,
    tags: dict[str, str] | None,
    ranks: Ranks,
    expected: str,
    resume_id: str | None,
    name: str = "train",
) -> tuple[Any, str]:
    """The context that ends the MLflow run (rank 0; a stand-in on the other ranks), and the run id every rank
    shares."""
    if not ranks.is_main:
        return contextlib.nullcontext(), from_main(ranks, None)
    experiment_id = use_experiment(config.experiment, workspace)
    run = (
        mlflow.start_run(run_id=resume_id)
        if resume_id
        else mlflow.start_run(
            experiment_id=experiment_id, run_name=config.run_name or name, tags=run_tags(tags, config, expected)
        )
    )
    return ending(run.info.run_id), from_main(ranks, run.info.run_id)


def log_run_params(config: TrainConfig, details: dict[str, Any]) -> None:
    """The whole config as flat params, and what the run derived from it (size, steps, data), unless
    the run has them already (a run continued from before its first checkpoint)."""
    if "total_steps" in mlflow.get_run(mlflow.active_run().info.run_id).data.params:
        return
    settings = config.model_dump(mode="json")
    settings["model"]["vocab_size"] = details["vocab_size"]  # the tokenizer's, where the config leaves it unset
    mlflow.log_params(
        flatten_params("", settings) | {key: str(value) for key, value in details.items() if key != "vocab_size"}
    )
