"""What Prefect prints on the console of a command: a failed run's log without its traceback, unless --debug."""

from __future__ import annotations

import logging


class _WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` does, leaving out its traceback (which other handlers still see)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_prefect_tracebacks() -> None:
    """Prefect's console log repeats a failed run's traceback; without --debug the command ends with one line
    instead. Only the console's formatter drops it: the run's logs in the Prefect UI keep the traceback."""
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict))]
    for handler in {
        handler for logger in loggers for handler in logger.handlers if isinstance(handler, PrefectConsoleHandler)
    }:
        handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))
