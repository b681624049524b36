"""What every flow run shows, in whatever process it runs (the command line, a served deployment's flow-run
subprocess, a work-pool worker's, a retry); set up when a flow module is imported (through report.py).

- tinylm's own log lines (training's `step N/M loss tokens/s ETA`) reach the Prefect run's
  logs. Prefect's PREFECT_LOGGING_EXTRA_LOGGERS would do it only where the variable is set
  before Prefect starts, and it passes on handlers but not a level (the root logger's
  WARNING would drop every INFO line).
- tinylm's warnings (a second command waiting for a first, a run abandoned by a restart) are
  also printed to the console: Prefect's handlers for other loggers only send to its API, so
  a command-line user would wait on a silent terminal.
- A cancel from the Prefect UI is logged as a cancel. Prefect cancels a run by sending its
  process SIGTERM, and its task engine logs the interrupted task as errors ("Crash
  detected! ... TerminationSignal", "Finished in state Crashed") even when the runner has
  told the process that this is a cancellation; those lines are logged at INFO level and
  say so instead.
"""

import logging

import prefect  # noqa: F401  (sets up Prefect's logging, whose "prefect.extra" handlers are copied below)
from prefect._internal.control_listener import get_intent


class _ConsoleWarnings(logging.StreamHandler):
    """Warnings and errors on stderr, in the shape of Prefect's console lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.WARNING)
        self.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S")
        )


def _send_tinylm_logs_to_prefect() -> None:
    tinylm = logging.getLogger("tinylm")
    tinylm.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in tinylm.handlers:
            tinylm.addHandler(handler)
    if not any(isinstance(handler, _ConsoleWarnings) for handler in tinylm.handlers):
        tinylm.addHandler(_ConsoleWarnings())


class _CancelIsNotACrash(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "Crash" in record.getMessage() and get_intent() == "cancel":
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "Task run stopped: its flow run was cancelled.", ()
        return True


def _log_cancels_as_cancels() -> None:
    task_runs = logging.getLogger("prefect.task_runs")
    if not any(isinstance(existing, _CancelIsNotACrash) for existing in task_runs.filters):
        task_runs.addFilter(_CancelIsNotACrash())


_send_tinylm_logs_to_prefect()
_log_cancels_as_cancels()
