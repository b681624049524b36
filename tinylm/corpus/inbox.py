"""Refresh bookkeeping: which inbox files are new, the ledger of what was done, and the workspace lock.

The ledger (`refresh/ledger.json` in the workspace) maps each processed file's sha256 to
the refresh that took it, and lists the training runs of the lineage in order. It is
written only after a refresh's training has finished, so a refresh that dies half-way is
redone in full by the next one (every stage it reruns is idempotent through manifests).
Files are recognised by content, so a renamed or re-uploaded file is not trained on twice;
a (size, mtime) cache keeps the hashing of unchanged files out of every refresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from filelock import FileLock, Timeout

from tinylm.storage.atomic import atomic_path, atomic_write_json

LEDGER = "ledger.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InboxFile:
    url: str
    name: str
    sha256: str


@dataclass
class Ledger:
    path: Path
    files: dict[str, dict] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    seen: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Ledger:
        path = directory / LEDGER
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, data["files"], data["runs"], data.get("seen", {}))

    def record(self, new: list[InboxFile], batch: str) -> None:
        """Mark the files done (with `runs` already updated) and write the ledger, atomically."""
        for item in new:
            self.files[item.sha256] = {"name": item.name, "batch": batch}
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"files": self.files, "runs": self.runs, "seen": self.seen})


def _sha256(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def scan_inbox(inbox: str, ledger: Ledger) -> list[InboxFile]:
    """Files under `inbox` (hidden ones aside) whose content the ledger has not seen, in name order."""
    fs, root = fsspec.core.url_to_fs(inbox)
    if not fs.exists(root):
        return []
    new = []
    for path in sorted(fs.find(root)):
        name = path.rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        info = fs.info(path)
        stamp = {"size": info.get("size"), "mtime": str(info.get("mtime") or info.get("LastModified") or "")}
        cached = ledger.seen.get(path)
        sha = cached["sha256"] if cached and {k: cached[k] for k in stamp} == stamp else _sha256(fs, path)
        ledger.seen[path] = stamp | {"sha256": sha}
        if sha not in ledger.files and all(sha != item.sha256 for item in new):
            new.append(InboxFile(fs.unstrip_protocol(path), name, sha))
    return new


def batch_id(files: list[InboxFile]) -> str:
    return hashlib.sha256("".join(sorted(item.sha256 for item in files)).encode()).hexdigest()[:12]


def stage_locally(files: list[InboxFile], staging: Path) -> list[str]:
    """Local paths of the files: local ones as they are, remote ones copied in (atomically) under their name."""
    paths = []
    for item in files:
        fs, path = fsspec.core.url_to_fs(item.url)
        if "file" in fs.protocol or "local" in fs.protocol:
            paths.append(path)
            continue
        local = staging / item.sha256[:12] / item.name
        if not local.exists():
            with atomic_path(local) as tmp:
                fs.get(path, str(tmp))
        paths.append(str(local))
    return paths


@contextmanager
def workspace_lock(directory: Path, timeout_s: float) -> Iterator[None]:
    """Hold the refresh lock of a workspace; a second refresh waits for the first, then finds its files done.

    `filelock` rather than `fcntl` by hand: the same lock on Linux, macOS and Windows, and
    released by the operating system when a holder is killed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / ".lock")
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise TimeoutError(f"another refresh has held {directory / '.lock'} for over {timeout_s:.0f} s") from None
    try:
        yield
    finally:
        lock.release()
