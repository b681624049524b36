"""The operator's path: deployments triggered as the Prefect UI's Run and Cancel buttons do, in the separate
flow-run processes Prefect starts for them, with PREFECT_API_URL exported as README says and the workspace's
MLflow server up. What the operator sees: progress lines in the run's logs, the summary artifacts with links
to MLflow, a scheduled refresh at its defaults saying what it did, a cancel that is a cancel."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort
from prefect.exceptions import ObjectNotFound

from tests.helpers import free_port, in_background, start_mlflow_server, tiny_train_config, write_lines
from tests.test_pipeline import small_pipeline
from tinylm.model.config import ModelConfig
from tinylm.storage.documents import CorpusManifest
from tinylm.storage.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


async def deployment_id(name: str, timeout: float = 180) -> UUID:
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return (await client.read_deployment_by_name(name)).id
            except ObjectNotFound:
                assert time.monotonic() < deadline, f"{name} was never registered"
                await asyncio.sleep(1)


async def run_deployment(name: str, parameters: dict, timeout: float = 900) -> FlowRun:
    """What the UI's Run button does: a flow run of the deployment with the form's parameters; a runner takes it."""
    return await wait_for_final(await create_run(name, parameters), timeout)


async def create_run(name: str, parameters: dict) -> UUID:
    async with get_client() as client:
        return (await client.create_flow_run_from_deployment(await deployment_id(name), parameters=parameters)).id


async def wait_for_final(flow_run_id: UUID, timeout: float = 900) -> FlowRun:
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while True:
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state.is_final():
                return flow_run
            assert time.monotonic() < deadline, f"flow run stuck in {flow_run.state.name}"
            await asyncio.sleep(1)


async def family(flow_run_id: UUID) -> list[FlowRun]:
    """A flow run and its subflow runs, all the way down."""
    async with get_client() as client:
        runs, frontier = [await client.read_flow_run(flow_run_id)], [flow_run_id]
        while frontier:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
            )
            runs += children
            frontier = [child.id for child in children]
        return runs


async def log_lines(flow_run_ids: list[UUID]) -> list[tuple[int, str]]:
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), limit=200
        )
        lines, offset = [], 0
        while logs:
            lines += [(log.level, log.message) for log in logs]
            offset += len(logs)
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), limit=200, offset=offset
            )
        return lines


async def newest_artifact(key: str, flow_run_id: UUID | None = None) -> str:
    async with get_client() as client:
        artifacts = await client.read_artifacts(sort=ArtifactSort.CREATED_DESC)
        return next(str(item.data) for item in artifacts if item.key == key and flow_run_id in (None, item.flow_run_id))


def wait_for_log(flow_run_ids: list[UUID], text: str, timeout: float = 60) -> list[str]:
    """The run's log lines holding `text`, once there are any: Prefect sends logs in batches, after the state."""
    deadline = time.monotonic() + timeout
    while not (found := [message for _, message in asyncio.run(log_lines(flow_run_ids)) if text in message]):
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(1)
    return found


def progress_lines(lines: list[tuple[int, str]]) -> list[str]:
    return [
        message for _, message in lines if message.startswith("step ") and "loss" in message and "tokens/s" in message
    ]


@pytest.fixture
def operator(prefect_api, tmp_path):
    """`make servers` as README has it (an MLflow server on the workspace's store, its URL in urls.json), then
    `PREFECT_API_URL=... python deployments/serve.py` started in `tmp_path`, where the relative default
    workspace `workspace` lies."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    mlflow_url = f"http://127.0.0.1:{free_port()}"
    mlflow_server = start_mlflow_server(int(mlflow_url.rsplit(":", 1)[1]), workspace, str(workspace / "mlartifacts"))
    (workspace / "servers").mkdir()
    (workspace / "servers" / "urls.json").write_text(
        json.dumps({"prefect_api_url": prefect_api, "mlflow_tracking_uri": mlflow_url})
    )
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"} | {
        "PREFECT_API_URL": prefect_api
    }
    served = in_background([sys.executable, str(ROOT / "deployments" / "serve.py")], tmp_path, environment)
    try:
        yield workspace, mlflow_url
    finally:
        os.killpg(served.pid, signal.SIGKILL)
        served.wait(timeout=30)
        mlflow_server.kill()
        mlflow_server.wait(timeout=30)


def test_deployments_run_from_the_ui_say_what_they_did_in_their_logs_and_artifacts(
    operator, enwiki_dump, zuozhuan, constitution, tmp_path
):
    workspace, mlflow_url = operator
    # A model whose context takes the refresh's default windows (the demo's 256 tokens), small enough to train in
    # seconds.
    model = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=256)
    config = small_pipeline("workspace", [enwiki_dump, zuozhuan]).model_dump(mode="json")
    config["train"]["model"] = dataclasses.asdict(model)
    pipeline = asyncio.run(run_deployment("pipeline/pipeline", {"config": config}))
    assert pipeline.state.is_completed(), pipeline.state.message
    runs = asyncio.run(family(pipeline.id))
    assert {run.name for run in runs} >= {"pipeline-e2e", "corpus-e2e", "tokenizer-e2e", "shards-e2e", "train-e2e"}, (
        "named after the stage"
    )
    wait_for_log([run.id for run in runs], "train: run ")
    progress = progress_lines(asyncio.run(log_lines([run.id for run in runs])))
    assert len(progress) >= 10 and any(" ETA " in line for line in progress), "training progress in the run's logs"

    summary = asyncio.run(newest_artifact("pipeline-summary", pipeline.id))
    train_run = MlflowClient(mlflow_url).search_runs(
        [MlflowClient(mlflow_url).get_experiment_by_name("tinylm").experiment_id], "tags.`tinylm.stage` = 'train'"
    )[0]
    assert (
        f"{mlflow_url}/#/experiments/{train_run.info.experiment_id}/runs/{train_run.info.run_id}?workflowType=machine_learning"
        in summary
    )
    assert all(f"| {stage} |" in summary for stage in ("corpus", "tokenizer", "shards", "train"))
    assert summary.count(f"{mlflow_url}/#/experiments/") >= 6, "every stage's run, the pipeline's and the model's"
    assert str(workspace / "checkpoints" / train_run.info.run_id) in summary
    assert mlflow_url in asyncio.run(newest_artifact("corpus-summary")), "links to MLflow with PREFECT_API_URL exported"
    assert train_run.data.tags["tinylm.prefect_flow_run"].endswith(
        f"/runs/flow-run/{[r for r in runs if r.name == 'train-e2e'][0].id}"
    )

    # GRPO from its form, starting from the pipeline's model, on a prompts file named relative to the served process.
    sums = [{"prompt": f"{a}+{b}=", "answer": a + b} for a in range(4) for b in range(4)]
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(record) + "\n" for record in sums), "utf-8")
    form = {"init_run_id": train_run.info.run_id, "max_prompt_tokens": 64, "max_completion_tokens": 8, "log_every": 1}
    grpo = asyncio.run(run_deployment("grpo/grpo", {"config": form | {"num_generations": 4}, "prompts": "sums.jsonl"}))
    assert grpo.state.is_completed(), grpo.state.message
    assert wait_for_log([grpo.id], "grpo: 16 prompts from sums.jsonl")
    wait_for_log([grpo.id], "grpo: run ")
    rewarded = [line for line in progress_lines(asyncio.run(log_lines([grpo.id]))) if " reward " in line]
    assert len(rewarded) == 4, "four steps of four prompts, each line with its reward"

    # The scheduled refresh, which runs with no parameters: it finds the pipeline's workspace, tokenizer and run.
    write_lines(
        workspace / "inbox" / "new.jsonl",
        [line for line in constitution.read_text(encoding="utf-8").splitlines() if len(line) > 20],
    )
    refresh = asyncio.run(run_deployment("refresh/refresh", {}))
    assert refresh.state.is_completed(), refresh.state.message
    said = asyncio.run(newest_artifact("refresh-summary", refresh.id))
    assert "1 new files, trained run" in said and mlflow_url in said
    refreshed = [run for run in asyncio.run(family(refresh.id)) if run.name.startswith("train-")]
    wait_for_log([run.id for run in refreshed], "train: run ")
    assert progress_lines(asyncio.run(log_lines([run.id for run in refreshed]))), (
        "the refresh's training shows its progress"
    )
    continued = MlflowClient(mlflow_url).search_runs([train_run.info.experiment_id], "tags.`tinylm.stage` = 'train'")[0]
    assert continued.data.tags["tinylm.init_run_id"] == train_run.info.run_id

    again = asyncio.run(run_deployment("refresh/refresh", {}))
    assert again.state.is_completed()
    assert f"nothing new in {Path('workspace') / 'inbox'}" in asyncio.run(newest_artifact("refresh-summary", again.id))
    assert wait_for_log([again.id], "nothing new in")

    empty = asyncio.run(run_deployment("refresh/refresh", {"config": {"workspace": str(tmp_path / "elsewhere")}}))
    assert empty.state.is_failed()
    assert "no finished training run" in empty.state.message and "run the pipeline there first" in empty.state.message


def test_a_prefect_yaml_deployment_on_a_work_pool_logs_training_progress(prefect_api, shards_dir, tmp_path):
    """The other way README offers: `prefect deploy --all` from prefect.yaml and a process worker on the pool."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT, checkout, ignore=shutil.ignore_patterns(".git", ".venv", "workspace", "test-artifacts", "__pycache__")
    )
    prefect = str(Path(sys.executable).parent / "prefect")
    environment = os.environ | {"PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    environment.pop("MLFLOW_TRACKING_URI", None)
    spec = yaml.safe_load((checkout / "prefect.yaml").read_text())
    spec["deployments"] = [deployment for deployment in spec["deployments"] if deployment["name"] == "train"]
    (checkout / "prefect.yaml").write_text(yaml.safe_dump(spec))
    for command in (
        ["work-pool", "create", "tinylm", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(
            [prefect, *command], cwd=checkout, env=environment, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
    worker = in_background([prefect, "worker", "start", "--pool", "tinylm"], tmp_path, environment)
    try:
        config = tiny_train_config(max_shards=1).model_dump(mode="json")
        parameters = {"shards": str(shards_dir), "config": config, "workspace": str(tmp_path / "workspace")}
        flow_run = asyncio.run(run_deployment("train/train", parameters, timeout=600))
        assert flow_run.state.is_completed(), flow_run.state.message
        wait_for_log([flow_run.id], "train: run ")
        assert progress_lines(asyncio.run(log_lines([flow_run.id]))), "the worker's flow run logs training progress"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert httpx.get(f"{prefect_api}/health").status_code == 200


def test_serve_py_stops_on_sigterm_after_a_run(prefect_api, constitution, tmp_path):
    """What `kill`, systemd and docker stop send: the serving process alone, which must end cleanly."""
    environment = os.environ | {
        "PREFECT_API_URL": prefect_api,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    server = in_background([sys.executable, str(ROOT / "deployments" / "serve.py")], ROOT, environment)
    output = tmp_path / "corpus"
    try:
        parameters = {"inputs": [str(constitution)], "output": str(output), "workspace": str(tmp_path)}
        assert asyncio.run(run_deployment("corpus/corpus", parameters)).state.is_completed()
        assert read_manifest(output, CorpusManifest).stats["kept"] > 50
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, "serve.py did not stop on SIGTERM"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
