import contextlib
import json
import logging

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tinylm.tracking.store import abandon, embedded_uri, ending, interrupted_run_ids, tracking_uri, use_experiment


@pytest.mark.service
def test_embedded_store_keeps_artifacts_in_its_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("first", "second"):
        workspace = tmp_path / name
        experiment = mlflow.get_experiment(use_experiment("tinylm", workspace))
        assert mlflow.get_tracking_uri() == f"sqlite:///{workspace.resolve()}/mlflow.db"
        assert experiment.artifact_location == (workspace / "mlartifacts").resolve().as_uri()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.service
def test_a_users_tracking_uri_wins(tmp_path, monkeypatch):
    user_store = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_store)
    assert tracking_uri(tmp_path / "workspace") == user_store
    use_experiment("tinylm", tmp_path / "workspace")
    assert mlflow.get_tracking_uri() == user_store
    assert not (tmp_path / "workspace" / "mlflow.db").exists()


def test_a_run_ends_finished_failed_or_killed_and_a_cancelled_one_is_continued_until_abandoned(workspace):
    experiment_id = use_experiment("tinylm", workspace)
    tracking = MlflowClient()

    def run_through(block: type[BaseException] | None) -> str:
        run_id = tracking.create_run(experiment_id, tags={"probe": "ending"}).info.run_id
        with contextlib.suppress(BaseException), ending(run_id):
            if block is not None:
                raise block()
        return run_id

    finished, failed, cancelled = run_through(None), run_through(ValueError), run_through(KeyboardInterrupt)
    statuses = {run_id: tracking.get_run(run_id).info.status for run_id in (finished, failed, cancelled)}
    assert statuses == {finished: "FINISHED", failed: "FAILED", cancelled: "KILLED"}
    assert set(interrupted_run_ids(experiment_id, "tags.probe = 'ending'")) == {cancelled, failed}, (
        "a cancelled run is continued"
    )
    abandon(cancelled, "restart")
    assert interrupted_run_ids(experiment_id, "tags.probe = 'ending'") == [failed]

    mlflow.start_run(experiment_id=experiment_id)
    fluent = mlflow.active_run().info.run_id
    with contextlib.suppress(BaseException), ending(fluent):
        raise SystemExit(1)
    assert mlflow.active_run() is None and tracking.get_run(fluent).info.status == "KILLED"


def test_the_workspace_mlflow_server_is_used_while_it_answers(workspace, monkeypatch, caplog):
    """With `make servers` up, runs go to its MLflow server (whatever PREFECT_API_URL says); without, to the SQLite
    store."""
    from tests.helpers import free_port, start_mlflow_server

    port = free_port()
    (workspace / "servers").mkdir()
    (workspace / "servers" / "urls.json").write_text(
        json.dumps({"prefect_api_url": "http://127.0.0.1:9/api", "mlflow_tracking_uri": f"http://127.0.0.1:{port}"})
    )
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert tracking_uri(workspace) == embedded_uri(workspace), "no server answers yet"
    server = start_mlflow_server(port, workspace)
    try:
        monkeypatch.setattr("tinylm.tracking.store._SERVER_CHECKS", {})
        assert tracking_uri(workspace) == f"http://127.0.0.1:{port}"
        use_experiment("tinylm", workspace)
        assert mlflow.get_tracking_uri() == f"http://127.0.0.1:{port}"
        other = workspace.parent / "other"
        assert tracking_uri(other) == embedded_uri(other), "another workspace keeps its own store"
        (other / "servers").mkdir(parents=True)
        (other / "servers" / "urls.json").write_text("{damaged")
        monkeypatch.setattr("tinylm.tracking.store._SERVER_CHECKS", {})
        with caplog.at_level(logging.WARNING, logger="tinylm"):
            assert tracking_uri(other) == embedded_uri(other)
        assert "urls.json is unreadable" in caplog.text, "a damaged servers file is said, not skipped in silence"
    finally:
        server.kill()
        server.wait()
