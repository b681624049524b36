"""A real browser on the real UIs: the Prefect page of a finished pipeline run and its MLflow run page.

Headless Chromium renders each single-page app (`--dump-dom` after a virtual-time budget)
and the test reads what a user would see; screenshots are kept in `test-artifacts/`
(or $TINYLM_TEST_ARTIFACTS). Skipped only when Chromium is absent (.ci/run installs it).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import free_port, start_mlflow_server, wait_for_http
from tests.test_pipeline import small_pipeline

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's)")]


def render(url: str, screenshot: Path) -> str:
    """The page's DOM once its scripts have run, and a screenshot of it."""
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=20000",
        "--window-size=1400,1000",
    ]
    subprocess.run([*flags, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    return subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout


@pytest.fixture
def servers(tmp_path):
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    environment = os.environ | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": api,  # the page's scripts call the API here, not at the default :4200
        "PREFECT_API_URL": api,
    }
    prefect = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    mlflow = None
    try:
        wait_for_http(f"http://127.0.0.1:{prefect_port}/api/health", prefect)
        mlflow = start_mlflow_server(mlflow_port, tmp_path / "mlflow")
        yield f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    finally:
        for process in (prefect, mlflow):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def test_the_uis_show_a_finished_pipeline_run_with_its_artifacts_and_metrics(servers, enwiki_dump, zuozhuan, tmp_path):
    prefect_url, mlflow_url = servers
    shots = Path(os.environ.get("TINYLM_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(small_pipeline(tmp_path / "workspace", [enwiki_dump, zuozhuan]).model_dump(mode="json")))
    environment = os.environ | {"PREFECT_API_URL": f"{prefect_url}/api", "MLFLOW_TRACKING_URI": mlflow_url}
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "tinylm"), "pipeline", "--config", str(config)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(finished.stdout[finished.stdout.index("{\n") :])  # Prefect's log lines come first

    (flow_run,) = httpx.post(f"{prefect_url}/api/flow_runs/filter", json={"flows": {"name": {"any_": ["pipeline"]}}}).json()
    page = render(f"{prefect_url}/runs/flow-run/{flow_run['id']}", shots / "prefect-pipeline-run.png")
    assert flow_run["name"] in page and "Completed" in page
    artifacts = render(f"{prefect_url}/artifacts", shots / "prefect-artifacts.png")
    assert all(key in artifacts for key in ("corpus-summary", "shards-stats", "train-summary", "train-progress"))

    run = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": result["run_id"]}).json()["run"]
    run_url = f"{mlflow_url}/#/experiments/{run['info']['experiment_id']}/runs/{result['run_id']}"
    page = render(run_url, shots / "mlflow-train-run.png")
    assert run["info"]["run_name"] in page and "val_loss" in page
    artifacts = render(f"{run_url}/artifacts", shots / "mlflow-train-artifacts.png")
    assert "checkpoints" in artifacts and "samples" in artifacts
    assert all((shots / name).stat().st_size > 10_000 for name in ("prefect-pipeline-run.png", "mlflow-train-run.png"))
