"""train flow: pretrain shard by shard (or fine-tune), checkpointing each shard to MLflow; the body the dpo and distill
flows share."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tinylm.config import TrainConfig
from tinylm.flows.report import StageProgress, prefect_link_tags, publish_stats, run_name
from tinylm.tracking.lineage import DATA_TAG, STAGE_TAG
from tinylm.tracking.store import run_link
from tinylm.training.launch import run_training

run_training_task = task(run_training, name="train-model", cache_policy=NO_CACHE)


@flow(
    name="train",
    description="Pretrain (or SFT, optionally LoRA) shard by shard, a checkpoint in MLflow after each shard.",
    flow_run_name=run_name("train", "shards"),
)
def train_flow(
    shards: str = "workspace/shards/default",
    config: TrainConfig = TrainConfig(),
    workspace: str = "workspace",
    tags: dict[str, str] | None = None,
) -> dict:
    """Pretrain on shards, or fine-tune on chat data (SFT; with `config.lora`, adapters only); `tags` go on the
    MLflow run beside the flow run's id. With `config.processes` > 1 the task launches torchrun and trains
    data-parallel.

    Args:
        shards: directory of token shards, or of chat data (relative: to where the serving process started)
        config: model, optimizer and schedule
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        tags: extra tags for the MLflow run
    """
    return train_stage("train", shards, config, workspace, tags)


def train_stage(stage: str, data: str, config: TrainConfig, workspace: str, extra_tags: dict[str, str] | None) -> dict:
    """One training run as a flow's task, whatever its method: progress, logs and the summary artifact."""
    tags = {
        "prefect.flow_run_id": str(flow_run.id),
        DATA_TAG: str(Path(data).resolve()),
        STAGE_TAG: stage,
    } | prefect_link_tags()
    tags |= extra_tags or {}
    progress = StageProgress(stage, "optimizer steps done, in percent")
    result = run_training_task(data, workspace, config, tags, progress)
    progress(1.0)  # a reused run trains no step, and its progress must not stay at 0%
    history = _history(result)
    get_run_logger().info("%s: run %s %s", stage, result["run_id"], history)
    publish_stats(
        stage,
        result,
        summary=f"**{stage}** finished: final loss {result['final_loss']:.4f} after {result['steps']} steps, "
        f"{history}. MLflow run {run_link(workspace, result['run_id'])}",
    )
    return result


def _history(result: dict) -> str:
    """How the run came about: reused whole, continued after an interruption, or trained from the start."""
    if result["reused"]:
        return "reused: the same training had finished before"
    if result.get("resumed_from_step") is not None:
        return f"continued from its checkpoint at step {result['resumed_from_step']} after an interruption"
    return "trained from the start"
