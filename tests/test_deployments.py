from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from tinylm.deployments.serve import build_deployments

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_load_the_flows_they_name():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {}
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        names[deployment["name"]] = flow.name
        assert deployment["work_pool"]["name"] == "tinylm"
    assert names == {n: n for n in ("pipeline", "corpus", "tokenizer", "shards", "train", "chat-data", "refresh")}
    (refresh,) = [d for d in spec["deployments"] if d["name"] == "refresh"]
    assert refresh["schedules"] == [{"cron": "0 3 * * *"}]


def test_served_deployments_render_their_configs_as_forms():
    deployments = {d.name: d for d in build_deployments()}
    assert sorted(deployments) == ["chat-data", "corpus", "pipeline", "refresh", "shards", "tokenizer", "train"]
    assert deployments["refresh"].schedules[0].schedule.cron == "0 3 * * *"
    pipeline_schema = deployments["pipeline"]._parameter_openapi_schema.model_dump()
    definitions = pipeline_schema["definitions"]
    assert {"PipelineConfig", "CorpusConfig", "TrainConfig", "ModelConfig"} <= set(definitions)
    assert "vocab_size" in definitions["TokenizerConfig"]["properties"]
    assert deployments["pipeline"].parameters["config"]["name"] == "demo"
    train_schema = deployments["train"]._parameter_openapi_schema.model_dump()
    assert set(train_schema["properties"]) == {"shards", "config", "workspace", "tags"}
    chat_schema = deployments["chat-data"]._parameter_openapi_schema.model_dump()
    assert set(chat_schema["definitions"]["ChatDataConfig"]["properties"]) == {"format", "max_seq_len", "batch_records"}
