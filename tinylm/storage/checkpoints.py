"""Training checkpoints: one directory per save, written atomically, mirrored to MLflow.

A checkpoint directory holds `state.pt` (model, optimizer, scheduler, RNG states) and
`checkpoint.json` (the data cursor, model config, tokenizer hash), plus the tokenizer
files so it can be used on its own. `checkpoint.json` is uploaded to MLflow last: a
remote checkpoint without it was cut off mid-upload and is not complete.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from tinylm.storage.atomic import atomic_path
from tinylm.tracking.store import client

STATE_FILE = "state.pt"
META_FILE = "checkpoint.json"
ARTIFACT_ROOT = "checkpoints"


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


def save_checkpoint(directory: Path, state: dict[str, Any], meta: dict[str, Any], extra_files: dict[str, Path]) -> Path:
    """Write a whole checkpoint directory, or nothing: the rename happens after every file is down."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE_FILE)
        for name, source in extra_files.items():
            (tmp / name).write_bytes(source.read_bytes())
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def log_checkpoint(directory: Path, name: str) -> None:
    """Upload to the active MLflow run, the completion marker last."""
    artifact_path = f"{ARTIFACT_ROOT}/{name}"
    for item in sorted(directory.iterdir()):
        if item.name != META_FILE:
            mlflow.log_artifact(str(item), artifact_path)
    mlflow.log_artifact(str(directory / META_FILE), artifact_path)


def newest_remote_checkpoint(run_id: str) -> str | None:
    """Artifact path of the run's newest complete checkpoint, or None if it has none."""
    tracking = client()
    names = sorted((item.path for item in tracking.list_artifacts(run_id, ARTIFACT_ROOT) if item.is_dir), reverse=True)
    for path in names:
        if any(item.path.endswith(META_FILE) for item in tracking.list_artifacts(run_id, path)):
            return path
    return None


def download_checkpoint(run_id: str, destination: Path) -> Path | None:
    path = newest_remote_checkpoint(run_id)
    if path is None:
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(destination)))


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} is not a complete checkpoint: {META_FILE} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    return state, meta
