"""Who is doing a piece of work now: a file lock per run key, held for as long as its run is live.

MLflow cannot tell a RUNNING run whose process was killed from one whose process is still
at work: both are RUNNING. The lock can, and it is the operating system that releases
it when its holder dies, SIGKILL included. So everything that continues an interrupted
run (a training, a pipeline or refresh group, an evaluation) looks for one only while
holding the lock of its key: a run it finds RUNNING then was left by a dead process,
never by a live one, and a second command doing the same work waits for the first and
then finds its result. Processes on other machines that share only a tracking server
are not covered: share the workspace, or do not run the same work twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from tinylm.storage.layout import lock_file

log = logging.getLogger(__name__)


@contextmanager
def work_lock(workspace: str | Path, name: str, work: str) -> Iterator[None]:
    """Hold the workspace's lock `name` for the block; if another process holds it, say so (naming `work`) and wait."""
    path = lock_file(workspace, name)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("another process is running this %s (it holds %s); waiting for it to finish", work, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
