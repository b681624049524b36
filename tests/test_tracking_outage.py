"""Training against a real `mlflow server` that goes down mid-run and comes back."""

import os
import signal
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import free_port, start_mlflow_server, tiny_train_config
from tinylm.training.trainer import train_model


@pytest.mark.slow
def test_training_rides_out_a_tracking_server_restart(shards_dir, workspace, tmp_path, monkeypatch):
    port, store = free_port(), tmp_path / "server"
    server = [start_mlflow_server(port, store)]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    killed_at: list[float] = []

    def restart_after_first_checkpoint() -> None:
        while not any(workspace.glob("checkpoints/*/step-*/checkpoint.json")):
            time.sleep(0.05)
        os.killpg(server[0].pid, signal.SIGKILL)
        server[0].wait()
        killed_at.append(time.monotonic())
        time.sleep(2)
        server[0] = start_mlflow_server(port, store)

    restarter = threading.Thread(target=restart_after_first_checkpoint, daemon=True)
    restarter.start()
    config = tiny_train_config(
        max_shards=2, max_steps_per_shard=20, checkpoint_every=2, eval_batches=0, sample_tokens=0
    )
    try:
        result = train_model(shards_dir, workspace, config)
        finished_at = time.monotonic()
        restarter.join(timeout=120)
        assert killed_at and killed_at[0] < finished_at, "the server went down during the run"
        client = MlflowClient()
        assert len(client.get_metric_history(result["run_id"], "loss")) == result["steps"] == 40
        remote = [item.path for item in client.list_artifacts(result["run_id"], "checkpoints")]
        assert remote == [f"checkpoints/step-{step:08d}" for step in range(2, 41, 2)]
    finally:
        os.killpg(server[0].pid, signal.SIGKILL)
