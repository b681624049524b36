"""A checkpoint's whole weights, whatever it holds: a full model, or LoRA adapters on another run's checkpoint.

An adapter checkpoint names its base (run id and checkpoint); its weights are the base's
with the adapters folded in, the base found locally in the workspace or fetched from
MLflow, itself resolved the same way (adapters trained on an adapter run's merged weights).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tinylm.model.config import ModelConfig
from tinylm.storage.checkpoints import META_FILE, load_checkpoint
from tinylm.storage.layout import run_checkpoints
from tinylm.tracking.checkpoint_artifacts import download_checkpoint
from tinylm.tracking.retry import retrying

Found = tuple[dict[str, Any], dict[str, Any]]


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def fetch_checkpoint(run_id: str, name: str, workspace: Path | None) -> Found:
    """Checkpoint `name` of a run: the workspace's copy when it has one, else MLflow's."""
    local = run_checkpoints(workspace, run_id) / name if workspace is not None else None
    if local is not None and (local / META_FILE).exists():
        return load_checkpoint(local)
    with tempfile.TemporaryDirectory() as scratch:
        downloaded = retrying(lambda: download_checkpoint(run_id, Path(scratch), name))
        if downloaded is None:
            raise FileNotFoundError(f"run {run_id} has no checkpoint {name}, locally or in MLflow: an adapter run needs its base kept")
        return load_checkpoint(downloaded)


def full_weights(found: Found, workspace: Path | None) -> tuple[dict, ModelConfig]:
    """The model weights a checkpoint stands for, and the model's shape."""
    state, meta = found
    config = ModelConfig(**meta["model_config"])
    if "lora" not in meta:
        return state["model"], config
    from tinylm.weights.adapters import merged_weights

    base_state, _ = full_weights(fetch_checkpoint(meta["base"]["run_id"], meta["base"]["checkpoint"], workspace), workspace)
    return merged_weights(base_state, config, meta["lora"], state["model"]), config
