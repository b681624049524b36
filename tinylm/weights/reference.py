"""A model as a command names it, found and turned into whole weights in one place.

`train --init`, `chat`, `generate`, `export`, `eval` and `serve` all accept the same five
forms, and a run id is looked up the same way everywhere: the workspace's copy of the run's
checkpoints first (nothing downloaded, nothing asked of a tracking server), then the MLflow
store. The reference is classified before anything is read, so a typo is one line naming
the five forms, not an MLflow error.

An adapter checkpoint names its base (run id and checkpoint); its weights are the base's
with the adapters folded in, the base found the same way (adapters trained on an adapter
run's merged weights resolve in turn).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tinylm.model.config import ModelConfig
from tinylm.model.hf_mapping import model_config_of, tinylm_state_dict
from tinylm.storage.checkpoints import META_FILE, load_checkpoint, newest_local_checkpoint
from tinylm.storage.layout import run_checkpoints
from tinylm.tracking.checkpoint_artifacts import download_checkpoint
from tinylm.tracking.retry import retrying

HF_CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
REGISTERED = "models:/"
RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids
STEP = re.compile(r"step-(\d+)")
FORMS = (
    "an MLflow run id, a run's checkpoint directory, one step's directory, an exported folder, or models:/NAME/VERSION"
)


@dataclass(frozen=True)
class LocatedModel:
    """Where a model's files are on this machine, and which training run and step they came from where that is known."""

    directory: (
        Path  # a checkpoint step directory (with checkpoint.json) or an exported Hugging Face folder (config.json)
    )
    exported: bool
    run_id: str | None
    step: int

    def checkpoint(self, needed_by: str) -> Path:
        """The checkpoint directory, for work that needs what only a tinylm checkpoint holds (its run, its adapters)."""
        if self.exported:
            raise ValueError(
                f"{self.directory} is an exported folder: {needed_by} needs a tinylm checkpoint (a run id or its "
                "directory)"
            )
        return self.directory


def locate_model(reference: str, workspace: Path | None, scratch: Path) -> LocatedModel:
    """The model `reference` names (see FORMS); what must be downloaded goes under `scratch`."""
    if reference.startswith(REGISTERED):
        return _registered(reference, scratch)
    path = Path(reference)
    if (path / HF_CONFIG_FILE).exists():
        return LocatedModel(path, exported=True, run_id=None, step=0)
    if (path / META_FILE).exists():
        return _step_directory(path)
    if path.is_dir():
        newest = newest_local_checkpoint(path)
        if newest is None:
            raise FileNotFoundError(
                f"{path} holds no complete checkpoint (no step directory with {META_FILE}): name another run or step"
            )
        return _step_directory(newest)
    if RUN_ID.fullmatch(reference):
        found = run_checkpoint(reference, workspace, scratch)
        if found is None:
            raise FileNotFoundError(
                f"run {reference} has no complete checkpoint in the workspace or in the MLflow store in use "
                "(check --workspace or MLFLOW_TRACKING_URI)"
            )
        return LocatedModel(found, exported=False, run_id=reference, step=_step_of(found.name))
    raise FileNotFoundError(f"{reference} names no model: give {FORMS}")


def run_checkpoint(run_id: str, workspace: Path | None, scratch: Path, name: str | None = None) -> Path | None:
    """A run's checkpoint `name` (None: its newest complete one): the workspace's copy when it has one, else MLflow's,
    downloaded under `scratch`; None when neither has it."""
    if workspace is not None:
        run_dir = run_checkpoints(workspace, run_id)
        local = newest_local_checkpoint(run_dir) if name is None else run_dir / name
        if local is not None and (local / META_FILE).exists():
            return local
    from mlflow.exceptions import MlflowException

    try:
        return retrying(lambda: download_checkpoint(run_id, scratch, name))
    except MlflowException as error:
        if error.get_http_status_code() >= 500:
            raise
        return None  # the store does not know the run


Found = tuple[dict[str, Any], dict[str, Any]]


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def full_weights(found: Found, workspace: Path | None) -> tuple[dict, ModelConfig]:
    """The model weights a loaded checkpoint stands for, and the model's shape."""
    state, meta = found
    config = ModelConfig(**meta["model_config"])
    if "lora" not in meta:
        return state["model"], config
    from tinylm.weights.adapters import merged_weights

    base, name = meta["base"]["run_id"], meta["base"]["checkpoint"]
    with tempfile.TemporaryDirectory() as scratch:
        directory = run_checkpoint(base, workspace, Path(scratch), name)
        if directory is None:
            raise FileNotFoundError(
                f"run {base} has no checkpoint {name}, locally or in MLflow: an adapter run needs its base kept"
            )
        base_state, _ = full_weights(load_checkpoint(directory), workspace)
    return merged_weights(base_state, config, meta["lora"], state["model"]), config


def model_weights(located: LocatedModel, workspace: Path | None) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The whole weights under tinylm's names, and the model's shape: adapters folded into their base, an
    exported folder's weights renamed back."""
    if not located.exported:
        return full_weights(load_checkpoint(located.directory), workspace)
    config = model_config_of(json.loads((located.directory / HF_CONFIG_FILE).read_text(encoding="utf-8")))
    return tinylm_state_dict(load_file(str(located.directory / WEIGHTS_FILE)), config), config


def _step_directory(path: Path) -> LocatedModel:
    """A step's directory; under `checkpoints/<run id>/` it names its run."""
    run_id = path.parent.name if RUN_ID.fullmatch(path.parent.name) else None
    return LocatedModel(path, exported=False, run_id=run_id, step=_step_of(path.name))


def _registered(reference: str, scratch: Path) -> LocatedModel:
    """A registered model version: an exported folder, and the run it was registered from."""
    import mlflow

    from tinylm.tracking.store import client

    name, _, version = reference.removeprefix(REGISTERED).partition("/")
    run_id = retrying(lambda: client().get_model_version(name, version).run_id) if version.isdigit() else None
    folder = Path(retrying(lambda: mlflow.artifacts.download_artifacts(artifact_uri=reference, dst_path=str(scratch))))
    if not (folder / HF_CONFIG_FILE).exists():
        raise ValueError(
            f"{reference} is not a Hugging Face folder (a GGUF export is for llama.cpp and ollama): name a version "
            "registered from `tinylm export --format hf`"
        )
    return LocatedModel(folder, exported=True, run_id=run_id, step=0)


def _step_of(name: str) -> int:
    found = STEP.fullmatch(name)
    return int(found.group(1)) if found else 0
