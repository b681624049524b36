"""Launch training in several processes with `torchrun`, on this machine or on several, and bring the result back.

The train flow stays one Prefect flow run per machine: its task calls `run_training`,
which starts `torchrun`, which runs `python -m tinylm.training.launch` once per process;
every process trains its slice of each batch (see `distributed.py`), rank 0 alone
writes the MLflow run and the checkpoints, and each machine's first process writes the
result (the same on every rank) where that machine's caller reads it.

Several machines meet at torchrun's c10d rendezvous on node 0's endpoint. Node 0 hosts
its store by configuration, not by matching its hostname against the endpoint: two
"nodes" on one host (the test) would otherwise both try to host it.
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
from tinylm.training.runs import train_fingerprint
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
            *torchrun_options(config, train_fingerprint(data_dir, config)[:16]),
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


def torchrun_options(config: TrainConfig, rendezvous_id: str) -> list[str]:
    """One machine: torchrun's standalone rendezvous. Several: c10d at node 0's endpoint, where nodes with the same
    training (`rendezvous_id`, from its fingerprint) meet; a node with another config waits apart instead of joining."""
    if config.nodes == 1:
        return ["--standalone", f"--nproc-per-node={config.processes}"]
    return [
        f"--nnodes={config.nodes}",
        f"--nproc-per-node={config.processes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={config.rendezvous}",
        f"--rdzv-id={rendezvous_id}",
        f"--rdzv-conf=is_host={int(config.node_rank == 0)}",
    ]


def run_training(
    data_dir: str | Path,
    workspace: str | Path,
    config: TrainConfig,
    tags: dict[str, str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Train in this process, or in `config.processes` processes (on each of `config.nodes` machines) under
    torchrun."""
    if config.processes == 1 and config.nodes == 1:
        return train_model(data_dir, workspace, config, tags, progress)
    result = train_with_torchrun(data_dir, workspace, config, tags)
    if progress is not None:
        progress(1.0)
    return result


def _worker(data_dir: str, workspace: str, kind: str, config_json: str, tags_json: str, result_path: str) -> None:
    result = train_model(
        data_dir, workspace, config_classes()[kind].model_validate_json(config_json), json.loads(tags_json)
    )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        Path(result_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    _worker(*sys.argv[1:])
