import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL

from tinylm.flows.deployments import build_deployments
from tinylm.storage.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_load_the_flows_they_name():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {}
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        names[deployment["name"]] = flow.name
        assert deployment["work_pool"]["name"] == "tinylm"
    assert names == {
        n: n for n in ("pipeline", "corpus", "tokenizer", "shards", "train", "chat-data", "dpo", "distill", "merge", "eval", "refresh")
    }
    (refresh,) = [d for d in spec["deployments"] if d["name"] == "refresh"]
    assert refresh["schedules"] == [{"cron": "0 3 * * *"}]
    assert not [d["name"] for d in spec["deployments"] if "description" in d], "descriptions come from the flows, one place"


def test_served_deployments_render_their_configs_as_forms():
    deployments = {d.name: d for d in build_deployments()}
    assert sorted(deployments) == [
        *("chat-data", "corpus", "distill", "dpo", "eval", "merge", "pipeline", "refresh", "shards", "tokenizer", "train")
    ]
    assert deployments["refresh"].schedules[0].schedule.cron == "0 3 * * *"
    pipeline_schema = deployments["pipeline"]._parameter_openapi_schema.model_dump()
    definitions = pipeline_schema["definitions"]
    assert {"PipelineConfig", "CorpusConfig", "TrainConfig", "ModelConfig"} <= set(definitions)
    assert "vocab_size" in definitions["TokenizerConfig"]["properties"]
    assert deployments["pipeline"].parameters["config"]["name"] == "demo"
    train_schema = deployments["train"]._parameter_openapi_schema.model_dump()
    assert set(train_schema["properties"]) == {"shards", "config", "workspace", "tags"}
    chat_schema = deployments["chat-data"]._parameter_openapi_schema.model_dump()
    assert set(chat_schema["definitions"]["ChatDataConfig"]["properties"]) == {
        "format",
        "max_seq_len",
        "batch_records",
        "simplify",
        "convert",
        "source_weights",
        "validation_fraction",
        "shard_units",
        "seed",
    }
    dpo_schema = deployments["dpo"]._parameter_openapi_schema.model_dump()
    assert {"beta", "reference_run_id", "precompute_reference", "lora"} <= set(dpo_schema["definitions"]["DpoConfig"]["properties"])
    assert {"rank", "alpha", "dropout", "target_modules"} == set(dpo_schema["definitions"]["LoraConfig"]["properties"])
    distill_schema = deployments["distill"]._parameter_openapi_schema.model_dump()
    assert "config" in distill_schema["required"], "the teacher has no default: the form asks for it"
    assert deployments["merge"]._parameter_openapi_schema.model_dump()["required"] == ["run_id"]
    refresh = deployments["refresh"].parameters["config"]
    assert refresh["workspace"] == "workspace" and refresh["train"] == deployments["pipeline"].parameters["config"]["train"], (
        "a scheduled refresh continues what the pipeline's form builds"
    )


def test_every_deployment_and_every_field_of_its_form_says_what_it_is():
    for deployment in build_deployments():
        assert deployment.description and len(deployment.description) < 200, deployment.name
        schema = deployment._parameter_openapi_schema.model_dump()
        fields = {f"{deployment.name}.{name}": prop for name, prop in schema["properties"].items()}
        for model, definition in schema.get("definitions", {}).items():
            fields |= {f"{model}.{name}": prop for name, prop in definition.get("properties", {}).items()}
        assert not [name for name, prop in fields.items() if not prop.get("description")], "fields without a description"
        html = [name for name, prop in fields.items() if re.search(r"</?[a-z]+>", prop["description"])]
        assert html == [], "the form renders descriptions as HTML: a <tag> in one vanishes"


@pytest.mark.slow
def test_a_served_deployment_runs_a_flow_run_created_like_the_ui_does(prefect_api, constitution, tmp_path):
    api_url = PREFECT_API_URL.value()
    environment = os.environ | {"PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "deployments" / "serve.py")],
        cwd=ROOT,
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    output = tmp_path / "corpus"
    try:
        state = asyncio.run(
            _run_deployment("corpus/corpus", {"inputs": [str(constitution)], "output": str(output), "workspace": str(tmp_path)})
        )
        assert state.is_completed(), state
        assert read_manifest(output)["stats"]["kept"] > 50
        server.send_signal(signal.SIGTERM)  # what `kill`, systemd and docker stop send: the server alone
        assert server.wait(timeout=30) == 0, "serve.py did not stop on SIGTERM"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


async def _run_deployment(name: str, parameters: dict):
    """What the UI's Run button does: create a flow run of the deployment, then the served runner picks it up."""
    async with get_client() as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                deployment = await client.read_deployment_by_name(name)
                break
            except ObjectNotFound:
                assert time.monotonic() < deadline, "serve.py never registered its deployments"
                await asyncio.sleep(1)
        flow_run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        while True:
            flow_run = await client.read_flow_run(flow_run.id)
            if flow_run.state.is_final():
                return flow_run.state
            assert time.monotonic() < deadline + 300, f"flow run stuck in {flow_run.state.name}"
            await asyncio.sleep(1)
