"""Fold a LoRA run's adapters into its base weights, as a run of its own that everything else can start from.

The merged run holds a whole-model checkpoint (weights only: nothing trains on from it
as it stands) tagged with the adapter run it came from, so DPO, export and serving read
it like any trained run, and MLflow's lineage reads pretrain → SFT (LoRA) → merge → DPO.
Merging the same adapter checkpoint again returns the earlier merged run.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from tinylm.storage.checkpoints import load_checkpoint, save_checkpoint
from tinylm.storage.layout import run_checkpoints, run_downloads
from tinylm.storage.manifest import fingerprint
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE
from tinylm.tracking.checkpoint_artifacts import log_checkpoint
from tinylm.tracking.groups import group_tags
from tinylm.tracking.retry import retrying
from tinylm.tracking.store import FINGERPRINT_TAG, finished_run, use_experiment
from tinylm.weights.reference import checkpoint_name, full_weights, run_checkpoint

MERGED_FROM_TAG = "tinylm.merged_from"


def merge_adapters(
    run_id: str, workspace: str | Path, experiment: str = "tinylm", tags: dict[str, str] | None = None
) -> dict:
    """A run whose checkpoint is `run_id`'s newest adapters folded into their base; returns its id and shape."""
    workspace = Path(workspace)
    located = run_checkpoint(run_id, workspace, run_downloads(workspace, run_id))
    if located is None:
        raise FileNotFoundError(f"run {run_id} has no complete checkpoint to merge")
    state, meta = load_checkpoint(located)
    if "lora" not in meta:
        raise ValueError(f"run {run_id} holds whole weights, not LoRA adapters: there is nothing to merge")
    source = f"{run_id}/{checkpoint_name(meta['cursor']['step'])}"
    experiment_id = use_experiment(experiment, workspace)
    expected = fingerprint("merge", {}, {"adapters": source})
    earlier = finished_run(experiment_id, expected)
    if earlier is not None:
        return {"run_id": earlier.info.run_id, "merged_from": source, "reused": True}
    weights, config = full_weights((state, meta), workspace)
    run_tags = (
        group_tags() | (tags or {}) | {FINGERPRINT_TAG: expected, MERGED_FROM_TAG: source, "tinylm.init_run_id": run_id}
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name="merge", tags=run_tags) as run:
        merged_meta = {key: value for key, value in meta.items() if key not in ("lora", "base")}
        name = checkpoint_name(meta["cursor"]["step"])
        directory = run_checkpoints(workspace, run.info.run_id) / name
        save_checkpoint(directory, {"model": weights}, merged_meta, {TOKENIZER_FILE: located / TOKENIZER_FILE})
        retrying(lambda: log_checkpoint(directory, name))
        mlflow.log_params(
            {"merged_from": source, "lora_rank": meta["lora"]["rank"], "dim": config.dim, "n_layers": config.n_layers}
        )
    return {"run_id": run.info.run_id, "merged_from": source, "reused": False}
