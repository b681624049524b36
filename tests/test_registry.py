"""One registry behind every surface: a method registered from a test module (tests/plugins/) is a command, a served
deployment with its config as the form, a prefect.yaml entry and a section of the config reference, and it trains
through the command line like a built-in one. The committed prefect.yaml is what the registry says.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_train_config
from tinylm.registry import PLUGINS_VARIABLE, commands
from tinylm.tracking.store import use_experiment

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = {PLUGINS_VARIABLE: "tests.plugins.smoothing_config", "PYTHONPATH": str(ROOT)}

SURFACES = """
import json
from tinylm.cli import build_parser
from tinylm.config_reference import render
from tinylm.flows.deployments import build_deployments, prefect_yaml

args = build_parser("smoothed-train").parse_args(["smoothed-train", "--data", "d", "--smoothing", "0.25"])
settings = args.settings(args)
(deployment,) = [d for d in build_deployments() if d.name == "smoothed-train"]
form = deployment._parameter_openapi_schema.model_dump()
print(json.dumps({
    "settings": [type(settings).__name__, settings.smoothing],
    "form": sorted(form["properties"]),
    "form_config": form["definitions"]["SmoothingConfig"]["properties"]["smoothing"],
    "entrypoint": deployment.entrypoint,
    "reference": "## SmoothingConfig" in render() and "probability mass spread" in render(),
    "prefect_yaml": "tinylm/flows/tuning.py:smoothed_train_flow" in prefect_yaml(),
}))
"""


@pytest.mark.service  # a subprocess
def test_a_method_registered_from_a_test_module_is_on_every_surface():
    ran = subprocess.run(
        [sys.executable, "-c", SURFACES], env=os.environ | PLUGIN, cwd=ROOT, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["settings"] == ["SmoothingConfig", 0.25], "its flags are its config's fields"
    assert seen["form"] == ["config", "data", "tags", "workspace"]
    assert seen["form_config"]["exclusiveMaximum"] == 1.0, "the form carries the setting's bounds"
    assert seen["entrypoint"] == "tinylm/flows/tuning.py:smoothed_train_flow"
    assert seen["reference"] and seen["prefect_yaml"]
    assert "smoothed-train" not in {entry.name for entry in commands()}, "a plugin is loaded only where it is named"


def test_a_plugin_method_trains_through_the_command_line_and_its_flow(prefect_api, shards_dir, workspace, tmp_path):
    config = tmp_path / "smoothing.yaml"
    settings = tiny_train_config(max_shards=1, max_steps_per_shard=3, sample_tokens=0, eval_batches=0).model_dump()
    config.write_text(json.dumps(settings))
    command = [sys.executable, "-m", "tinylm.cli", "smoothed-train", "--data", str(shards_dir), "--config", str(config)]
    command += ["--smoothing", "0.2", "--workspace", str(workspace)]
    ran = subprocess.run(
        command, env=os.environ | PLUGIN | {"PREFECT_API_URL": prefect_api}, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout)
    use_experiment("tinylm", workspace)
    run = MlflowClient().get_run(result["run_id"])
    assert run.info.run_name == "smoothed-train" and run.data.params["smoothing"] == "0.2" and result["steps"] == 3
    assert run.data.tags["tinylm.stage"] == "smoothed-train"


@pytest.mark.service  # a subprocess
def test_prefect_yaml_is_what_the_registry_says():
    """(docs/config.md's check is in test_docs.py.)"""
    ran = subprocess.run(
        [sys.executable, "scripts/prefect_yaml.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr


def test_every_registered_name_reaches_its_handler_config_and_flow():
    """A registry entry names its parts by import path: a typo would surface only when someone runs that command."""
    from tinylm.registry import load

    for entry in commands():
        assert callable(load(entry.handler)), entry.name
        if entry.config:
            assert entry.config_model().model_json_schema()["properties"], entry.name
        if entry.flow:
            assert load(entry.flow).name == entry.name, f"{entry.name}'s flow is named {load(entry.flow).name}"
