"""Atomic writes: every output appears whole or not at all.

A stage killed with SIGKILL may leave a hidden temp file behind, never a truncated
file under its final name, so a re-run can trust whatever final files it finds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_path_for(final: str | os.PathLike[str]) -> Path:
    """A hidden, unique path beside `final` (same filesystem, so the rename is atomic)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final` and rename it into place if the body succeeds.

    The temp path may be written as a file or created as a directory; the rename is
    atomic on one filesystem either way. An existing file at `final` is replaced; an
    existing directory is swapped out first, so readers never see a mix of both.
    """
    tmp = temp_path_for(final)
    try:
        yield tmp
        commit(tmp, final)
    finally:
        discard(tmp)


def commit(tmp: Path, final: str | os.PathLike[str]) -> None:
    """Move a finished temp file or directory to its final name in one atomic step."""
    final = Path(final)
    if tmp.is_file():
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    if final.is_dir():
        old = temp_path_for(final)
        os.replace(final, old)
        os.replace(tmp, final)
        discard(old)
    else:
        os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def remove_stale_temps(directory: str | os.PathLike[str], name: str = "") -> None:
    """Delete the temp files and folders that killed writers left in `directory` (of the final file `name`, or of
    any), so they never pile up. A temp whose writer still runs on this machine is left alone: parallel writers
    share directories."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for leftover in directory.glob(f".{name or '*'}.tmp-*"):
        writer = _TEMP_WRITER.search(leftover.name)
        if writer is None or not _alive(int(writer.group(1))):
            discard(leftover)


_TEMP_WRITER = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
