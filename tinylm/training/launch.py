"""Launch training in several processes with `torchrun`, and bring rank 0's result back.

The train flow stays one Prefect flow run: its task calls `run_training`, which starts
`torchrun`, which runs `python -m tinylm.training.launch` once per process; every
process trains its slice of each batch (see `distributed.py`) and rank 0 writes the
result where the caller reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tinylm.config import TrainConfig
from tinylm.training.methods import config_classes
from tinylm.training.trainer import train_model


def train_with_torchrun(
    data_dir: str | Path, workspace: str | Path, config: TrainConfig, tags: dict[str, str] | None = None
) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={config.processes}",
            "-m",
            "tinylm.training.launch",
            str(data_dir),
            str(workspace),
            type(config).__name__,  # the config's class selects the method: it travels by name
            config.model_dump_json(),
            json.dumps(tags or {}),
            str(result),
        ]
        subprocess.run(command, check=True)
        return json.loads(result.read_text(encoding="utf-8"))


def run_training(
    data_dir: str | Path,
    workspace: str | Path,
    config: TrainConfig,
    tags: dict[str, str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Train in this process, or in `config.processes` processes under torchrun."""
    if config.processes == 1:
        return train_model(data_dir, workspace, config, tags, progress)
    result = train_with_torchrun(data_dir, workspace, config, tags)
    if progress is not None:
        progress(1.0)
    return result


def _worker(data_dir: str, workspace: str, kind: str, config_json: str, tags_json: str, result_path: str) -> None:
    result = train_model(
        data_dir, workspace, config_classes()[kind].model_validate_json(config_json), json.loads(tags_json)
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    _worker(*sys.argv[1:])
