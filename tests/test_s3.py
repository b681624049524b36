"""S3-compatible storage through fsspec, against a real S3 API (moto's server): the refresh inbox and
MLflow's artifact store (checkpoints) live in a bucket."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")
import fsspec  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from tests.helpers import free_port, start_mlflow_server, tiny_train_config, wait_for_http, write_lines  # noqa: E402
from tests.test_pipeline import small_pipeline  # noqa: E402
from tinylm.corpus.inbox import Ledger  # noqa: E402
from tinylm.flows.pipeline import pipeline_flow  # noqa: E402
from tinylm.flows.refresh import refresh_flow  # noqa: E402
from tinylm.training.trainer import train_model  # noqa: E402

BUCKET = "tinylm"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3(monkeypatch):
    """An S3 endpoint with an empty bucket; fsspec's s3 protocol pointed at it."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(endpoint, server, timeout=60)
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        yield endpoint
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_refresh_reads_its_inbox_from_a_bucket(s3, refresh_setup, tmp_path):
    base, config, lines = refresh_setup
    write_lines(tmp_path / "new.jsonl", lines[:150])
    boto3.client("s3", endpoint_url=s3).upload_file(str(tmp_path / "new.jsonl"), BUCKET, "inbox/2026-11/new.jsonl")
    result = refresh_flow(config.model_copy(update={"inbox": f"s3://{BUCKET}/inbox"}))
    assert result["new_files"] == 1 and result["lineage"][0] == base and result["documents_kept"] > 100
    (entry,) = Ledger.load(Path(config.workspace) / "refresh").files.values()
    assert entry["name"] == "new.jsonl"
    assert refresh_flow(config.model_copy(update={"inbox": f"s3://{BUCKET}/inbox"}))["new_files"] == 0


@pytest.mark.slow
def test_checkpoints_go_to_an_mlflow_artifact_store_in_a_bucket(s3, shards_dir, workspace, tmp_path, monkeypatch):
    port = free_port()
    server = start_mlflow_server(
        port, tmp_path / "mlflow", f"s3://{BUCKET}/mlflow", CREDENTIALS | {"MLFLOW_S3_ENDPOINT_URL": s3}
    )
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        result = train_model(shards_dir, workspace, tiny_train_config(max_shards=1, sample_tokens=0))
        listed = [item.path for item in MlflowClient().list_artifacts(result["run_id"], "checkpoints/step-00000006")]
        assert "checkpoints/step-00000006/checkpoint.json" in listed
        keys = [item["Key"] for item in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert any(key.endswith("step-00000006/state.pt") for key in keys), json.dumps(keys[:5])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_pipeline_mirrored_to_a_bucket_is_reused_on_a_fresh_workspace(s3, prefect_api, zuozhuan, workspace):
    config = small_pipeline(workspace, [zuozhuan]).model_copy(update={"mirror": f"s3://{BUCKET}/workspace"})
    first = pipeline_flow(config)
    keys = {item["Key"] for item in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket=BUCKET)["Contents"]}
    for key in (
        "corpus/e2e/manifest.json",
        "tokenizers/e2e/tokenizer.json",
        "shards/e2e/shard-00000.bin",
        "dedup-index/index.json",
    ):
        assert f"workspace/{key}" in keys
    assert not any("/_work/" in key for key in keys), "scratch stays local"
    for stage in ("corpus", "tokenizers", "shards", "dedup-index"):
        shutil.rmtree(workspace / stage)

    second = pipeline_flow(config)

    assert not (workspace / "corpus" / "e2e" / "_work").exists(), "the corpus came from the mirror, not from extraction"
    assert second["tokens"] == first["tokens"] and second["run_id"] == first["run_id"]
    assert (workspace / "dedup-index" / "index.json").exists()
