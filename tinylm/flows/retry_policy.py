"""When a failed task run is worth another try: a service that did not answer, never bad input.

A ConnectionError or TimeoutError (Redis, a remote inbox, the tracking server) may pass;
a ValueError about a corrupted file will not, and retrying it would only delay the
message the user needs.
"""

from __future__ import annotations

from typing import Any

from tinylm.tracking.retry import is_transient

RETRY_DELAYS_S = [2, 10, 30]


def transient_only(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the run failed with a transient error."""
    return is_transient(state.result(raise_on_failure=False))


# Keyword arguments for `prefect.task` shared by the data stages' tasks.
DATA_TASK_OPTIONS: dict[str, Any] = {
    "retries": len(RETRY_DELAYS_S),
    "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_condition_fn": transient_only,
}
