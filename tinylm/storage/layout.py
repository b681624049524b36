"""Where everything lives in a workspace: the one module that spells its layout (README's Workspace tree).

Every stage, command and flow asks here for a path instead of joining names by hand, so
the layout can be read, and changed, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Stage = Literal["corpus", "tokenizers", "shards", "sft", "dpo", "prompts"]


def stage_dir(workspace: str | Path, stage: Stage, name: str) -> Path:
    """A stage's output: `corpus/<name>`, `tokenizers/<name>`, `shards/<name>`, `sft/<name>`, `dpo/<name>`, or
    GRPO's encoded `prompts/<name>`."""
    return Path(workspace) / stage / name


def run_checkpoints(workspace: str | Path, run_id: str) -> Path:
    """A training run's checkpoints, one `step-NNNNNNNN/` directory each."""
    return Path(workspace) / "checkpoints" / run_id


def run_downloads(workspace: str | Path, run_id: str) -> Path:
    """Where a run's checkpoints fetched from MLflow are kept, beside its own (skipped when the workspace is
    mirrored)."""
    return run_checkpoints(workspace, run_id) / "_downloaded"


def lock_file(workspace: str | Path, name: str) -> Path:
    """A lock of the workspace (locks/), its folder made when first asked for."""
    path = Path(workspace) / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def mlflow_database(workspace: str | Path) -> Path:
    """The embedded MLflow store's SQLite file."""
    return Path(workspace) / "mlflow.db"


def mlflow_artifacts(workspace: str | Path) -> Path:
    """Where the embedded MLflow store keeps artifacts."""
    return Path(workspace) / "mlartifacts"


def servers_file(workspace: str | Path) -> Path:
    """The URLs of the servers `make servers` runs for the workspace."""
    return Path(workspace) / "servers" / "urls.json"


def refresh_state(workspace: str | Path) -> Path:
    """A refresh's ledger, lock and staging area."""
    return Path(workspace) / "refresh"
