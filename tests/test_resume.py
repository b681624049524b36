"""Interrupted work resumes by itself: a pipeline killed mid-shard and run again ends as if it had never died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import kill_when, tiny_train_config
from tinylm.config import CorpusConfig, ExtractConfig, PipelineConfig, ShardsConfig, TokenizerConfig
from tinylm.flows.pipeline import pipeline_flow
from tinylm.model.config import ModelConfig
from tinylm.storage.checkpoints import load_checkpoint, newest_local_checkpoint
from tinylm.tracking.store import FINGERPRINT_TAG, embedded_uri
from tinylm.training.runs import RESUMED_TAG

pytestmark = pytest.mark.slow


def pipeline_config(workspace: Path, inputs: list[Path]) -> PipelineConfig:
    """Three shards of training slow enough (a few seconds each) to be killed in the middle of one."""
    model = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    return PipelineConfig(
        workspace=str(workspace),
        name="resume",
        inputs=[str(path) for path in inputs],
        corpus=CorpusConfig(extract=ExtractConfig(text_mode="line")),
        tokenizer=TokenizerConfig(vocab_size=600),
        shards=ShardsConfig(shard_tokens=8192),
        train=tiny_train_config(
            model=model, seq_len=64, max_shards=3, max_steps_per_shard=30, eval_batches=1, sample_tokens=0
        ),
    )


def final_weights(workspace: Path, run_id: str) -> dict[str, torch.Tensor]:
    state, _ = load_checkpoint(newest_local_checkpoint(workspace / "checkpoints" / run_id))
    return state["model"]


def test_a_pipeline_killed_mid_shard_and_run_again_continues_its_training_run(
    prefect_api, constitution, table_dump, tmp_path, monkeypatch
):
    reference = pipeline_flow(pipeline_config(tmp_path / "reference", [constitution, table_dump]))
    monkeypatch.delenv(
        "MLFLOW_TRACKING_URI"
    )  # set by the reference run's store; the commands use their own workspace's
    workspace = tmp_path / "killed"
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(
        yaml.safe_dump(pipeline_config(workspace, [constitution, table_dump]).model_dump(mode="json"))
    )
    command = [sys.executable, "-m", "tinylm.cli", "pipeline", "--config", str(config_file)]

    api = {"PREFECT_API_URL": prefect_api}
    kill_when(
        f"import sys; from tinylm.cli import main; sys.exit(main({command[3:]!r}))",
        lambda: any(workspace.glob("checkpoints/*/step-*/checkpoint.json")),
        env=api,
    )
    subprocess.run(command, check=True, env=os.environ | api, capture_output=True)

    tracking = MlflowClient(embedded_uri(workspace))
    experiment = tracking.get_experiment_by_name("tinylm")
    runs = tracking.search_runs([experiment.experiment_id], "tags.`tinylm.stage` = 'train'")
    assert len(runs) == 1, "the re-run continued the killed training run instead of starting another"
    (run,) = runs
    assert run.info.status == "FINISHED" and int(run.data.tags[RESUMED_TAG]) > 0
    assert run.data.tags[FINGERPRINT_TAG]
    pipelines = tracking.search_runs([experiment.experiment_id], "tags.`tinylm.stage` = 'pipeline'")
    assert [p.info.status for p in pipelines] == ["FINISHED"], "one pipeline run, continued, not two"
    resumed, uninterrupted = (
        final_weights(workspace, run.info.run_id),
        final_weights(tmp_path / "reference", reference["run_id"]),
    )
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)
