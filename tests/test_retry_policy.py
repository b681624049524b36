"""Data tasks retry a service that did not answer, never bad input: real Prefect task runs."""

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from prefect import flow, task

from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.tracking.retry import is_transient

attempts: list[str] = []


def flaky(error: type[Exception]) -> str:
    attempts.append(error.__name__)
    if len(attempts) == 1:
        raise error("the first attempt fails")
    return "done"


flaky_task = task(flaky, **(DATA_TASK_OPTIONS | {"retry_delay_seconds": 0}))


@flow
def run_flaky(error_name: str) -> str:
    return flaky_task({"ConnectionError": ConnectionError, "ValueError": ValueError}[error_name])


def test_a_connection_error_is_retried_and_bad_input_is_not(prefect_api):
    attempts.clear()
    assert run_flaky("ConnectionError") == "done" and attempts == ["ConnectionError"] * 2
    attempts.clear()
    with pytest.raises(ValueError, match="first attempt"):
        run_flaky("ValueError")
    assert attempts == ["ValueError"], "bad input fails at once"


def test_mlflow_errors_are_transient_only_when_the_server_failed():
    assert is_transient(MlflowException("server down")) and is_transient(TimeoutError())
    assert not is_transient(MlflowException("bad parameter", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(FileNotFoundError("missing input"))
