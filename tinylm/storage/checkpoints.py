"""Checkpoint directories on disk: one per save, written atomically, complete only with their `checkpoint.json`.

A checkpoint directory holds `state.pt` (what `torch.save` wrote: model, optimizer,
scheduler and RNG states) and `checkpoint.json` (the data cursor, model config,
tokenizer hash), plus the tokenizer files so it can be used on its own. This is the one
module of `storage/` that imports torch: the checkpoint is an on-disk format like the
others, and `training/`, `inference/` and `tracking/` all read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tinylm.storage.atomic import atomic_path

STATE_FILE = "state.pt"
META_FILE = "checkpoint.json"


def save_checkpoint(directory: Path, state: dict[str, Any], meta: dict[str, Any], extra_files: dict[str, Path]) -> Path:
    """Write a whole checkpoint directory, or nothing: the rename happens after every file is down."""
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE_FILE)
        for name, source in extra_files.items():
            (tmp / name).write_bytes(source.read_bytes())
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def newest_local_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint directory of a run (names sort by step), or None."""
    complete = sorted(path.parent for path in run_dir.glob(f"*/{META_FILE}"))
    return complete[-1] if complete else None


def load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} is not a complete checkpoint: {META_FILE} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    return state, meta
