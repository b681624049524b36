"""Save and restore everything a run needs to continue exactly, together, as torchtitan's checkpointer does.

A checkpoint holds the model, optimizer, scheduler and RNG states and the data cursor
(shard, batch, step). The data order is a pure function of (seed, shard index), so a
run resumed from a checkpoint continues where the checkpoint was taken: a run killed at
any moment and resumed ends with the weights of one never interrupted. Checkpoints are
written locally first (atomically), then uploaded to the run in MLflow; resuming takes
the newest complete local one, else the newest complete one in MLflow.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.model.config import ModelConfig
from tinylm.storage.checkpoints import load_checkpoint, save_checkpoint
from tinylm.storage.layout import run_downloads
from tinylm.storage.manifest import TokenizedManifest, file_sha256
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE
from tinylm.weights.reference import Found, checkpoint_name, locate_model, model_weights, run_checkpoint


@dataclass
class Cursor:
    """Where training stands: the next batch to train is `batch` of shard `shard`."""

    shard: int = 0
    batch: int = 0
    step: int = 0


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoint(run_id: str, workspace: Path) -> Found | None:
    """Newest complete checkpoint of a run, loaded: the workspace's, else MLflow's."""
    directory = run_checkpoint(run_id, workspace, run_downloads(workspace, run_id))
    return load_checkpoint(directory) if directory is not None else None


def check_tokenizer(tokenizer_sha256: str, manifest: TokenizedManifest) -> None:
    if tokenizer_sha256 != manifest.tokenizer_sha256:
        raise ValueError(
            f"the data was built with tokenizer {manifest.tokenizer_sha256[:12]}, "
            f"the checkpoint with {tokenizer_sha256[:12]}: refusing to mix them"
        )


@dataclass
class Initial:
    """Where a run starts: another model's weights (adapters folded in), its shape, and which run and checkpoint
    they came from (no run for an exported folder)."""

    weights: dict[str, torch.Tensor]
    model_config: ModelConfig
    run_id: str | None
    checkpoint: str
    tokenizer_sha256: str


def initial_weights(reference: str, workspace: Path, manifest: TokenizedManifest | None) -> Initial:
    """Weights and shape of the model `reference` names (a run's newest checkpoint, a step, an exported folder),
    refused if its tokenizer is not the data's."""
    with tempfile.TemporaryDirectory() as scratch:
        located = locate_model(reference, workspace, Path(scratch))
        tokenizer_sha256 = file_sha256(located.directory / TOKENIZER_FILE)
        if manifest is not None:
            check_tokenizer(tokenizer_sha256, manifest)
        weights, config = model_weights(located, workspace)
    return Initial(weights, config, located.run_id, checkpoint_name(located.step), tokenizer_sha256)


class Checkpointer:
    """One run's checkpoints: `save` writes the whole training state at a cursor, `restore` puts it back.

    A LoRA run (`base` set: the checkpoint its frozen weights came from) saves its adapters
    and their optimizer state only, and names the base in the checkpoint's metadata.
    """

    def __init__(
        self,
        run_dir: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        manifest: TokenizedManifest,
        upload: Callable[[Path, str], None],
        model_config: ModelConfig,
        lora: dict | None = None,
        base: dict | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.manifest = manifest
        self.upload = upload
        self.model_config = model_config
        self.adapters = {"lora": lora, "base": base} if lora is not None else {}

    def save(self, cursor: Cursor, loss: float) -> None:
        name = checkpoint_name(cursor.step)
        if self.adapters:
            from tinylm.weights.adapters import adapter_state

            weights = adapter_state(self.model)
        else:
            weights = self.model.state_dict()
        state = {
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }
        meta = {
            "cursor": dataclasses.asdict(cursor),
            "model_config": dataclasses.asdict(self.model_config),
            "tokenizer_sha256": self.manifest.tokenizer_sha256,
            "eos_id": self.manifest.eos_id,
            "loss": loss,
            **self.adapters,
        }
        tokenizer = Path(self.manifest.tokenizer_dir) / TOKENIZER_FILE
        self.upload(save_checkpoint(self.run_dir / name, state, meta, {TOKENIZER_FILE: tokenizer}), name)

    def restore(self, found: Found) -> Cursor:
        """Load a found checkpoint into the model, optimizer, scheduler and RNGs; the cursor to continue from."""
        state, meta = found
        check_tokenizer(meta["tokenizer_sha256"], self.manifest)
        if self.adapters:
            from tinylm.weights.adapters import load_adapter_state

            load_adapter_state(self.model, state["model"])
        else:
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        return Cursor(**meta["cursor"])
