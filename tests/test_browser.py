"""A real browser on the real UIs: the Prefect page of a finished pipeline run and its MLflow run page.

Headless Chromium (Debian's, driven by Playwright) renders each single-page app until the
text a user would look for is on screen; the test reads what they would see, and keeps
screenshots in `test-artifacts/` (or $TINYLM_TEST_ARTIFACTS). Skipped only when Chromium is
absent (.ci/run installs it).
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import sync_playwright
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.helpers import CHROMIUM, free_port, in_background, tiny_train_config
from tests.test_operator import create_run, log_lines, wait_for_log
from tests.test_pipeline import small_pipeline
from tinylm.model.config import ModelConfig
from tinylm.tracking.store import CANCELLED_TAG

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's)"),
]


@pytest.fixture
def render() -> Iterator[Callable[..., str]]:
    """`render(url, screenshot, *texts)`: the page's text once every one of `texts` shows, after a screenshot of it."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        def show(url: str, screenshot: Path, *texts: str) -> str:
            page.goto(url)
            page.wait_for_function(
                "texts => texts.every(text => document.body.innerText.includes(text))", arg=list(texts), timeout=60_000
            )
            page.screenshot(path=str(screenshot))
            return page.inner_text("body")

        yield show
        browser.close()


def wait_until_up(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(1)


@pytest.fixture
def servers(tmp_path):
    """The servers as a user starts them: `make servers` on ports other than the defaults, `make stop` after."""
    workspace = tmp_path / "workspace"
    prefect_port, mlflow_port = free_port(), free_port()
    make = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        f"WORKSPACE={workspace}",
        f"PREFECT_PORT={prefect_port}",
        f"MLFLOW_PORT={mlflow_port}",
    ]
    environment = os.environ | {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    started = subprocess.run(
        [*make, "servers"], check=True, env=environment, capture_output=True, text=True, timeout=600
    )
    try:
        wait_until_up(f"http://127.0.0.1:{prefect_port}/api/health")
        wait_until_up(f"http://127.0.0.1:{mlflow_port}/health")
        (runs_list,) = re.findall(r"MLflow runs: (\S+)", started.stdout)
        yield workspace, f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}", runs_list
    finally:
        subprocess.run([*make, "stop"], env=environment, capture_output=True, timeout=120)


def run_pipeline(config: Path, workspace: Path) -> tuple[dict, str]:
    """`tinylm pipeline --summary` as a user runs it with the servers up (no PREFECT_API_URL exported): result and
    summary."""
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")
    }
    command = [
        str(Path(sys.executable).parent / "tinylm"),
        "pipeline",
        "--config",
        str(config),
        "--workspace",
        str(workspace),
        "--summary",
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, check=True, timeout=600)
    start = finished.stdout.index("{\n")  # Prefect's log lines come first
    end = finished.stdout.index("\n}\n", start) + 2
    return json.loads(finished.stdout[start:end]), finished.stdout[end:]


def test_the_uis_show_a_finished_pipeline_run_with_its_artifacts_and_metrics(
    servers, render, enwiki_dump, zuozhuan, tmp_path
):
    workspace, prefect_url, mlflow_url, runs_list = servers
    shots = Path(os.environ.get("TINYLM_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    assert httpx.get(f"{prefect_url}/ui-settings").json()["api_url"] == f"{prefect_url}/api", (
        "the UI would call another port's API"
    )
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(small_pipeline(workspace, [enwiki_dump, zuozhuan]).model_dump(mode="json")))
    result, summary = run_pipeline(config, workspace)
    run = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": result["run_id"]}).json()["run"]
    experiment_url = f"{mlflow_url}/#/experiments/{run['info']['experiment_id']}"
    run_url = f"{experiment_url}/runs/{result['run_id']}?workflowType=machine_learning"
    assert f"{prefect_url}/runs" in summary and run_url in summary and "--backend-store-uri http" not in summary

    (flow_run,) = httpx.post(
        f"{prefect_url}/api/flow_runs/filter", json={"flows": {"name": {"any_": ["pipeline"]}}}
    ).json()
    render(
        f"{prefect_url}/runs/flow-run/{flow_run['id']}",
        shots / "prefect-pipeline-run.png",
        flow_run["name"],
        "Completed",
    )
    render(
        f"{prefect_url}/artifacts",
        shots / "prefect-artifacts.png",
        "corpus-summary",
        "shards-stats",
        "train-summary",
        "train-progress",
    )
    summaries = httpx.post(
        f"{prefect_url}/api/artifacts/filter", json={"artifacts": {"key": {"any_": ["train-summary"]}}}
    ).json()
    assert run_url in summaries[0]["data"], "the Prefect summary links the MLflow run"

    # MLflow: names, durations, links back to Prefect, and the pipeline run's own numbers.
    assert run["info"]["run_name"] == "train"
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert tags["tinylm.prefect_flow_run"].startswith(f"{prefect_url}/runs/flow-run/")
    params = {param["key"]: param["value"] for param in run["data"]["params"]}
    assert params["model.vocab_size"] == str(result["vocab_size"])
    experiment_id = run["info"]["experiment_id"]
    experiment = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id}
    ).json()["experiment"]
    assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"]
    runs = httpx.post(f"{mlflow_url}/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id]}).json()[
        "runs"
    ]
    by_name = {item["info"]["run_name"]: item for item in runs}
    for stage in ("corpus", "tokenizer", "shards"):
        info = by_name[stage]["info"]
        assert (int(info["end_time"]) - int(info["start_time"])) / 1000 >= result["seconds"][stage] - 3, (
            f"{stage} duration"
        )
    pipeline = by_name["pipeline"]
    metrics = {metric["key"]: metric["value"] for metric in pipeline["data"]["metrics"]}
    assert metrics["final_loss"] == pytest.approx(result["final_loss"]) and metrics["documents"] == result["documents"]
    assert len(pipeline["data"]["params"]) > 40, "the pipeline run holds its whole config"

    page = render(run_url, shots / "mlflow-train-run.png", "train", "val_loss", "Prefect flow run", "Model registry")
    assert "Evaluation runs" not in page, "MLflow opened its GenAI view"
    render(run_url.replace("?", "/artifacts?"), shots / "mlflow-train-artifacts.png", "checkpoints", "samples")
    assert runs_list == f"{mlflow_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning", (
        "make servers printed it"
    )
    page = render(runs_list, shots / "mlflow-runs.png", "Runs", "pipeline")
    assert "Overview" not in page and "Detect Issues" not in page, "the runs list, not the GenAI overview"
    pipeline_url = (
        f"{mlflow_url}/#/experiments/{experiment_id}/runs/{pipeline['info']['run_id']}?workflowType=machine_learning"
    )
    render(pipeline_url, shots / "mlflow-pipeline-run.png", "final_loss", "seconds.train")
    assert all((shots / name).stat().st_size > 10_000 for name in ("prefect-pipeline-run.png", "mlflow-train-run.png"))

    # The same pipeline again: every stage reused, said so, and no progress left at 0%.
    again, summary = run_pipeline(config, workspace)
    assert again["run_id"] == result["run_id"] and again["reused"]
    runs = httpx.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment_id],
            "filter": "tags.`tinylm.stage` = 'pipeline'",
            "order_by": ["attributes.start_time DESC"],
        },
    ).json()["runs"]
    reused = {tag["key"]: tag["value"] for tag in runs[0]["data"]["tags"]}["tinylm.reused"]
    assert all(f"{stage} (" in reused for stage in ("corpus", "tokenizer", "shards", "train")), reused
    assert by_name["corpus"]["info"]["run_id"] in reused
    progress = httpx.post(
        f"{prefect_url}/api/artifacts/filter", json={"artifacts": {"type": {"any_": ["progress"]}}}
    ).json()
    assert progress and all(artifact["data"] == 100 for artifact in progress)
    notes = httpx.post(
        f"{prefect_url}/api/artifacts/filter", json={"artifacts": {"key": {"any_": ["corpus-summary"]}}}
    ).json()
    assert any("reused" in note["data"] for note in notes)


def test_a_run_cancelled_in_the_prefect_ui_ends_cancelled_there_and_killed_in_mlflow(servers, shards_dir, tmp_path):
    """The operator's Cancel button on a training run's page: Prefect says Cancelled with no error in the log,
    MLflow says KILLED (tagged, so the same command continues it)."""
    workspace, prefect_url, mlflow_url, _ = servers
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    served = in_background(
        [sys.executable, str(ROOT / "deployments" / "serve.py")],
        tmp_path,
        environment | {"PREFECT_API_URL": f"{prefect_url}/api"},
    )
    slow = tiny_train_config(
        model=ModelConfig(dim=384, n_layers=6, n_heads=6, n_kv_heads=2, max_seq_len=32), max_steps_per_shard=None
    )
    parameters = {"shards": str(shards_dir), "config": slow.model_dump(mode="json"), "workspace": str(workspace)}
    try:
        with temporary_settings({PREFECT_API_URL: f"{prefect_url}/api"}):
            flow_run_id = asyncio.run(create_run("train/train", parameters))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
                )
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{prefect_url}/runs/flow-run/{flow_run_id}")
                page.wait_for_function("document.body.innerText.includes('tokens/s')", timeout=300_000)
                page.get_by_role("button", name="Cancel", exact=True).click()
                page.get_by_role("button", name="Confirm", exact=True).click()
                deadline = time.monotonic() + 300
                flow_run_url = f"{prefect_url}/api/flow_runs/{flow_run_id}"
                while (state := httpx.get(flow_run_url).json()["state"])["type"] in ("RUNNING", "CANCELLING"):
                    assert time.monotonic() < deadline, "the cancel never finished"
                    time.sleep(1)
                assert state["type"] == "CANCELLED", state
                page.reload()
                page.wait_for_function("document.body.innerText.includes('Cancelled')", timeout=60_000)
                page.screenshot(
                    path=str(
                        Path(os.environ.get("TINYLM_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "prefect-cancelled.png"
                    )
                )
                browser.close()
            wait_for_log([flow_run_id], "cancelled")
            errors = [message for level, message in asyncio.run(log_lines([flow_run_id])) if level >= 40]
        assert errors == [], "a clean cancel logs no error"
    finally:
        os.killpg(served.pid, signal.SIGKILL)
        served.wait(timeout=30)
    experiment = httpx.get(
        f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "tinylm"}
    ).json()
    search = {"experiment_ids": [experiment["experiment"]["experiment_id"]], "filter": "tags.`tinylm.stage` = 'train'"}
    (run,) = httpx.post(f"{mlflow_url}/api/2.0/mlflow/runs/search", json=search).json()["runs"]
    tags = {tag["key"]: tag["value"] for tag in run["data"]["tags"]}
    assert run["info"]["status"] == "KILLED" and tags[CANCELLED_TAG] == "true"
