"""MLflow connection: the embedded default store, or whatever MLFLOW_TRACKING_URI names."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tinylm.storage.layout import lock_file, mlflow_artifacts, mlflow_database
from tinylm.storage.servers import running_server

# `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into the environment, so
# the variable alone cannot tell a user's choice from our own earlier call; these are ours.
_CHOSEN_URIS: set[str] = set()
# A workspace's running MLflow server, as last checked (monotonic time, URI or None): one
# health check per half minute, not one per call.
_SERVER_CHECKS: dict[Path, tuple[float, str | None]] = {}
_CHECK_EVERY_S = 30.0


def embedded_uri(workspace: str | Path) -> str:
    return f"sqlite:///{mlflow_database(workspace).resolve()}"


# MLflow 3's UI opens in its GenAI view (traces, judges, evaluation runs) unless told otherwise: the
# experiment's kind says model training, and the links we print ask for that view (the browser
# otherwise keeps the last view it showed).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def tracking_uri(workspace: str | Path) -> str:
    """MLFLOW_TRACKING_URI when the user set it; else the MLflow server `make servers` runs for the workspace,
    while it answers (it serves the same store, and its runs have pages to link to); else the workspace's SQLite
    store."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured and configured not in _CHOSEN_URIS:
        return configured
    return _workspace_server(workspace) or embedded_uri(workspace)


def _workspace_server(workspace: str | Path) -> str | None:
    key = Path(workspace).resolve()
    checked = _SERVER_CHECKS.get(key)
    if checked is None or time.monotonic() - checked[0] > _CHECK_EVERY_S:
        checked = _SERVER_CHECKS[key] = (time.monotonic(), running_server(workspace, "mlflow_tracking_uri"))
    return checked[1]


def use_experiment(name: str, workspace: str | Path) -> str:
    """Point MLflow at the tracking store and return the experiment's id, creating it if new.

    With the embedded store, artifacts go under the workspace (not the current directory),
    so one folder holds everything a run produced.
    """
    uri = tracking_uri(workspace)
    embedded = uri == embedded_uri(workspace)
    if embedded or uri == _workspace_server(workspace):
        _CHOSEN_URIS.add(uri)
    mlflow.set_tracking_uri(uri)
    # Two commands starting on a fresh workspace would both create the SQLite store's tables (MLflow's migrations
    # are not safe to run twice at once: "table ... already exists"), or both create the experiment: one at a time.
    with FileLock(lock_file(workspace, "mlflow-store")) if embedded else nullcontext():
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
                client().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
            return experiment.experiment_id
        artifacts = mlflow_artifacts(workspace).resolve().as_uri() if embedded else None
        return mlflow.create_experiment(name, artifact_location=artifacts, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})


def flatten_params(prefix: str, value: Any) -> dict[str, str]:
    """Nested config dict to MLflow's flat `a.b.c` params."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(flatten_params(f"{prefix}.{key}" if prefix else str(key), item))
        return flat
    return {prefix: str(value)}


def client() -> MlflowClient:
    return MlflowClient()


# What a killed process leaves (RUNNING) and what an exception leaves (FAILED): both are continued, and so is a
# run that was cancelled (KILLED with CANCELLED_TAG), unless a restart abandoned it (ABANDONED_TAG).
INTERRUPTED = ("RUNNING", "FAILED")
CANCELLED_TAG = "tinylm.cancelled"
ABANDONED_TAG = "tinylm.abandoned"


def newest_runs(experiment_id: str, filter_string: str, max_results: int = 100) -> list[Run]:
    """The experiment's runs that match an MLflow filter, newest first."""
    return client().search_runs(
        [experiment_id], filter_string, order_by=["attributes.start_time DESC"], max_results=max_results
    )


# The work a run did, named as `storage.manifest.fingerprint` names it: a training, an evaluation, a merge.
FINGERPRINT_TAG = "tinylm.fingerprint"


def finished_run(experiment_id: str, fingerprint: str) -> Run | None:
    """The newest FINISHED run of the work `fingerprint` names, or None: how training, evaluation and merging know
    they have nothing to do (data stages find the same fingerprint in their manifest:
    `storage.manifest.finished_output`)."""
    runs = newest_runs(
        experiment_id, f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED'", max_results=1
    )
    return runs[0] if runs else None


def interrupted_work(experiment_id: str, fingerprint: str) -> list[str]:
    """Runs of the work `fingerprint` names that a kill, an error or a cancel interrupted, newest first: continued."""
    return interrupted_run_ids(experiment_id, f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")


def _continuable(run: Run) -> bool:
    if run.info.status in INTERRUPTED:
        return True
    tags = run.data.tags
    return run.info.status == "KILLED" and tags.get(CANCELLED_TAG) == "true" and ABANDONED_TAG not in tags


def interrupted_run_ids(experiment_id: str, filter_string: str) -> list[str]:
    """Runs matching the filter that a kill, an error or a cancellation interrupted, newest first."""
    return [run.info.run_id for run in newest_runs(experiment_id, filter_string) if _continuable(run)]


def abandon(run_id: str, why: str) -> None:
    """Mark an interrupted run KILLED for good: nothing continues it."""
    tracking = client()
    tracking.set_tag(run_id, ABANDONED_TAG, why)
    tracking.set_terminated(run_id, "KILLED")


@contextmanager
def ending(run_id: str) -> Iterator[None]:
    """End the run with the status its block earned: FINISHED; FAILED when the block raised an error; KILLED when it
    was interrupted (a cancel from the Prefect UI arrives as Prefect's TerminationSignal, Ctrl-C as KeyboardInterrupt),
    tagged so that the same command continues it, as it continues a run killed outright. The fluent active run, if
    this is it, ends too (mlflow.start_run's own context would call every interruption FAILED)."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except Exception:
        raise
    except BaseException:
        status = "KILLED"
        client().set_tag(run_id, CANCELLED_TAG, "true")
        raise
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            mlflow.end_run(status)
        else:
            client().set_terminated(run_id, status)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the URI, when a tracking server is down (MLflow's own retries take minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"MLflow tracking server {uri} is unreachable ({error}); start it (`make servers`) or point "
            "MLFLOW_TRACKING_URI elsewhere"
        ) from error


def run_url(workspace: str | Path, run_id: str, server: str | None = None) -> str | None:
    """The run's page on the tracking server in use (or on `server`), or None with a local store and no server named.

    Always the run's page in MLflow's model-training view: the experiment's own page opens its GenAI overview."""
    store = tracking_uri(workspace)
    base = server or store
    if not base.startswith(("http://", "https://")):
        return None
    experiment_id = (
        MlflowClient(store).get_run(run_id).info.experiment_id
    )  # the workspace's store, whatever MLflow points at now
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"


def runs_url(server: str, experiment_id: str) -> str:
    """An experiment's runs list on a tracking server, in the model-training view (not the experiment's GenAI
    overview)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING_VIEW}"


def run_link(workspace: str | Path, run_id: str) -> str:
    """Markdown pointing at a run: a link on a tracking server, else how to open the embedded store at the run."""
    url = run_url(workspace, run_id)
    if url:
        return f"[{run_id}]({url})"
    return f"`{run_id}`: {mlflow_ui_command(workspace, run_id)}"


def mlflow_ui_command(workspace: str | Path, run_id: str, port: int = 5000) -> str:
    """How to see a run of the workspace's SQLite store: the `mlflow ui` command, then the run's page."""
    uri = tracking_uri(workspace)
    return (
        f"`mlflow ui --backend-store-uri {uri} --port {port}`, then "
        f"{run_url(workspace, run_id, f'http://127.0.0.1:{port}')}"
    )
