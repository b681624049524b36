"""Two commands on one workspace at once, as real processes: the store is created once, and a live run is never
taken for an interrupted one."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_train_config
from tinylm.model.config import ModelConfig
from tinylm.tracking.store import embedded_uri

TINYLM = str(Path(sys.executable).parent / "tinylm")
LONGER = ModelConfig(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, max_seq_len=64)


def test_commands_starting_together_on_a_fresh_workspace_create_the_store_once(workspace):
    code = "import sys; from tinylm.tracking.store import use_experiment; print(use_experiment('tinylm', sys.argv[1]))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(workspace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    answers = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [error[-500:] for _, error in answers]
    assert len({out.strip() for out, _ in answers}) == 1, "one experiment, the same id for all"


@pytest.mark.slow
def test_a_second_pipeline_waits_for_the_live_one_instead_of_joining_its_run(prefect_api, workspace, zuozhuan):
    config = {
        "workspace": str(workspace),
        "name": "twice",
        "inputs": [str(zuozhuan)],
        "corpus": {"extract": {"text_mode": "line"}},
        "tokenizer": {"vocab_size": 600},
        "shards": {"shard_tokens": 65536},
        # Long enough (a minute here) for the second command to start while the first trains.
        "train": tiny_train_config(
            model=LONGER, seq_len=64, batch_size=8, max_shards=6, max_steps_per_shard=None, sample_tokens=0
        ).model_dump(mode="json"),
    }
    path = workspace.parent / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [TINYLM, "pipeline", "--config", str(path)]
    env = {name: value for name, value in os.environ.items() if name != "MLFLOW_TRACKING_URI"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tracking = MlflowClient(embedded_uri(workspace))
    deadline = time.monotonic() + 300
    while not (workspace / "mlflow.db").exists() or not _runs(tracking, "train"):
        assert first.poll() is None and time.monotonic() < deadline, "the first pipeline never started training"
        time.sleep(0.2)
    assert [run.info.status for run in _runs(tracking, "pipeline")] == ["RUNNING"]
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [process.communicate(timeout=900)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [output[-2000:] for output in outputs]
    assert "another process is running this pipeline" in outputs[1], outputs[1][-2000:]

    groups = _runs(tracking, "pipeline")
    assert [run.info.status for run in groups] == ["FINISHED", "FINISHED"], "the second pipeline has a run of its own"
    for run in groups:
        for metric in run.data.metrics:
            assert len(tracking.get_metric_history(run.info.run_id, metric)) == 1, (
                f"{metric} logged twice on {run.info.run_id}"
            )
    trainings = _runs(tracking, "train")
    assert [run.info.status for run in trainings] == ["FINISHED"], (
        "the training ran once; the second pipeline reused it"
    )


def _runs(tracking: MlflowClient, stage: str) -> list:
    """The runs of a stage (`pipeline`: the group runs), oldest first."""
    experiment = tracking.get_experiment_by_name("tinylm")
    if experiment is None:
        return []
    filter_string = f"tags.`tinylm.stage` = '{stage}'"
    return tracking.search_runs([experiment.experiment_id], filter_string, order_by=["attributes.start_time ASC"])
