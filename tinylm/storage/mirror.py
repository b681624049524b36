"""A copy of finished workspace stages on any fsspec URL (S3, GCS, another disk), and back.

Stages commit their files by atomic rename, which object stores do not offer, so they
always work on a local (or shared POSIX) workspace. The mirror makes that workspace
disposable: each finished stage directory is pushed with its manifest last (a remote
directory without a manifest is unfinished, exactly as on disk), and a machine that
lacks a stage pulls it before running, so the stage finds its manifest and does no work.
"""

from __future__ import annotations

from pathlib import Path

import fsspec

from tinylm.storage.atomic import atomic_path
from tinylm.storage.manifest import MANIFEST_NAME

_SKIPPED_DIRS = {"_work", "_downloaded"}


def _files(directory: Path, marker: str) -> list[Path]:
    """The stage's files, its marker (the manifest) last; scratch folders and temp files left out."""
    files = [
        path
        for path in sorted(directory.rglob("*"))
        if path.is_file()
        and not path.name.startswith(".")
        and not _SKIPPED_DIRS & set(path.relative_to(directory).parts)
        and path.relative_to(directory).as_posix() != marker
    ]
    return files + ([directory / marker] if (directory / marker).exists() else [])


def push(directory: str | Path, url: str, marker: str = MANIFEST_NAME) -> int:
    """Upload a finished stage directory to `url`, `marker` last; returns the number of files sent."""
    directory = Path(directory)
    fs, root = fsspec.core.url_to_fs(url)
    files = _files(directory, marker)
    for path in files:
        target = f"{root}/{path.relative_to(directory).as_posix()}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), target)
    return len(files)


def pull(directory: str | Path, url: str, marker: str = MANIFEST_NAME) -> bool:
    """Fetch a finished stage from `url` when the local directory has no manifest; True if it did.

    Each file lands atomically and the manifest last, so an interrupted pull leaves a
    directory the stage treats as unfinished.
    """
    directory = Path(directory)
    fs, root = fsspec.core.url_to_fs(url)
    if (directory / marker).exists() or not fs.exists(f"{root}/{marker}"):
        return False
    remote = sorted(path for path in fs.find(root) if path != f"{root}/{marker}")
    for path in [*remote, f"{root}/{marker}"]:
        with atomic_path(directory / path[len(root) + 1 :]) as tmp:
            fs.get_file(path, str(tmp))
    return True
