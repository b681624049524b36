import mlflow

from tinylm.tracking.store import tracking_uri, use_experiment


def test_embedded_store_keeps_artifacts_in_its_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("first", "second"):
        workspace = tmp_path / name
        experiment = mlflow.get_experiment(use_experiment("tinylm", workspace))
        assert mlflow.get_tracking_uri() == f"sqlite:///{workspace.resolve()}/mlflow.db"
        assert experiment.artifact_location == (workspace / "mlartifacts").resolve().as_uri()
    assert not (tmp_path / "mlruns").exists()


def test_a_users_tracking_uri_wins(tmp_path, monkeypatch):
    user_store = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_store)
    assert tracking_uri(tmp_path / "workspace") == user_store
    use_experiment("tinylm", tmp_path / "workspace")
    assert mlflow.get_tracking_uri() == user_store
    assert not (tmp_path / "workspace" / "mlflow.db").exists()
