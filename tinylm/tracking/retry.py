"""Which failures are worth another try (a service that did not answer, never bad input), and retrying them.

A ConnectionError or TimeoutError (the tracking server, Redis, a remote inbox) may pass;
a 4xx answer or a ValueError about a damaged file will not, and retrying it would only
delay the message the user needs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def is_transient(error: BaseException | None) -> bool:
    """A service that did not answer (worth another try), as opposed to a request it refused or bad input.

    MLflow is looked up, not imported: importing it takes seconds that a data command need not
    pay, and an MlflowException exists only once something has imported MLflow.
    """
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is not None and isinstance(error, mlflow_exceptions.MlflowException):
        return error.get_http_status_code() >= 500
    return isinstance(error, TRANSIENT_ERRORS)


def retrying(action: Callable[[], T], attempts: int = 7, first_delay: float = 1.0) -> T:
    """Run `action`, retrying with doubling delays (about a minute in all) while the tracking server is unreachable.

    Only transient failures are retried; the last attempt's error is the one raised.
    """
    policy = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_delay),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    return policy(action)
