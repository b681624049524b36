"""Prefect flows and their task wrappers: the order of stages and their fan-out. The only package that imports Prefect.

Importing it sends tinylm's own log lines (training's `step N/M loss tokens/s ETA`) to the
Prefect run's logs, in whatever process the flow runs: the command line, a served
deployment's flow-run subprocess, a work-pool worker's, a retry. Prefect's
PREFECT_LOGGING_EXTRA_LOGGERS would do it only where the variable is set before Prefect
starts, and it passes on handlers but not a level (the root logger's WARNING would drop
every INFO line).
"""

import logging

import prefect  # noqa: F401  (sets up Prefect's logging, whose "prefect.extra" handlers are copied below)


def _send_tinylm_logs_to_prefect() -> None:
    tinylm = logging.getLogger("tinylm")
    tinylm.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in tinylm.handlers:
            tinylm.addHandler(handler)


_send_tinylm_logs_to_prefect()
