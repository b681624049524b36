import re
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

from tinylm.flows.deployments import build_deployments

ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_entrypoints_load_the_flows_they_name():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {}
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        names[deployment["name"]] = flow.name
        assert deployment["work_pool"]["name"] == "tinylm"
    assert names == {
        n: n
        for n in (
            "pipeline",
            "corpus",
            "tokenizer",
            "shards",
            "train",
            "chat-data",
            "dpo",
            "grpo",
            "distill",
            "merge",
            "eval",
            "refresh",
        )
    }
    (refresh,) = [d for d in spec["deployments"] if d["name"] == "refresh"]
    assert refresh["schedules"] == [{"cron": "0 3 * * *"}]
    assert not [d["name"] for d in spec["deployments"] if "description" in d], (
        "descriptions come from the flows, one place"
    )


def test_served_deployments_render_their_configs_as_forms():
    deployments = {d.name: d for d in build_deployments()}
    assert sorted(deployments) == [
        *(
            "chat-data",
            "corpus",
            "distill",
            "dpo",
            "eval",
            "grpo",
            "merge",
            "pipeline",
            "refresh",
            "shards",
            "tokenizer",
            "train",
        )
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
        "runner",
        "format",
        "ranked_pairs",
        "placeholders",
        "files",
        "dpo_turns",
        "max_skipped_share",
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
    assert {"beta", "reference_run_id", "precompute_reference", "lora"} <= set(
        dpo_schema["definitions"]["DpoConfig"]["properties"]
    )
    assert {"rank", "alpha", "dropout", "target_modules"} == set(dpo_schema["definitions"]["LoraConfig"]["properties"])
    distill_schema = deployments["distill"]._parameter_openapi_schema.model_dump()
    assert "config" in distill_schema["required"], "the teacher has no default: the form asks for it"
    grpo_schema = deployments["grpo"]._parameter_openapi_schema.model_dump()
    assert set(grpo_schema["required"]) == {"config", "prompts"}, "the starting run and the prompts have no default"
    assert {"num_generations", "rewards", "beta", "epsilon", "loss_type", "iterations", "think"} <= set(
        grpo_schema["definitions"]["GrpoConfig"]["properties"]
    )
    assert deployments["merge"]._parameter_openapi_schema.model_dump()["required"] == ["run_id"]
    refresh = deployments["refresh"].parameters["config"]
    assert (
        refresh["workspace"] == "workspace"
        and refresh["train"] == deployments["pipeline"].parameters["config"]["train"]
    ), "a scheduled refresh continues what the pipeline's form builds"


def test_every_deployment_and_every_field_of_its_form_says_what_it_is():
    for deployment in build_deployments():
        assert deployment.description and len(deployment.description) < 200, deployment.name
        schema = deployment._parameter_openapi_schema.model_dump()
        fields = {f"{deployment.name}.{name}": prop for name, prop in schema["properties"].items()}
        for model, definition in schema.get("definitions", {}).items():
            fields |= {f"{model}.{name}": prop for name, prop in definition.get("properties", {}).items()}
        assert not [name for name, prop in fields.items() if not prop.get("description")], (
            "fields without a description"
        )
        html = [name for name, prop in fields.items() if re.search(r"</?[a-z]+>", prop["description"])]
        assert html == [], "the form renders descriptions as HTML: a <tag> in one vanishes"
