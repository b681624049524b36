"""Stage manifests: the last file a stage writes, and the proof that its output is complete.

A stage directory without a manifest, or with one whose fingerprint differs from the
current inputs and config, is unfinished or stale and is redone. The fingerprint is a
hash of the stage name, its config and its inputs' content hashes, so a re-run with the
same inputs does no work, and a changed input or setting always does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tinylm.storage.atomic import atomic_write_json

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hashes(paths: list[str]) -> dict[str, str]:
    """sha256 of each input file, keyed by the path as given; a missing file is a clear error."""
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"input files not found: {', '.join(missing)}")
    return {path: file_sha256(path) for path in paths}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """One text for equal values whatever their key order, so equal configs hash equal."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def fingerprint(stage: str, config: Any, inputs: dict[str, str]) -> str:
    """Hash of what determines a stage's output: its name, config, and input content hashes."""
    payload = canonical_json({"stage": stage, "config": config, "inputs": inputs})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def manifest_path(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / MANIFEST_NAME


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = manifest_path(directory)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"manifest {path} is not valid JSON: {error}") from error


def write_manifest(directory: str | os.PathLike[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest and return it as stored (keys sorted, JSON types): what a rerun that finds the
    stage complete reads back, so a finished and a resumed command print the same thing."""
    atomic_write_json(manifest_path(directory), manifest)
    return json.loads(manifest_path(directory).read_text(encoding="utf-8"))


def finished_output(directory: str | os.PathLike[str], expected_fingerprint: str) -> dict[str, Any] | None:
    """The manifest, when `directory` holds the finished output of the work `expected_fingerprint` names; else None.

    This is how every data stage knows it has nothing to do: work is named by `fingerprint` (its kind, settings
    and inputs' content), and a stage writes its manifest, the fingerprint in it, last. Training, evaluation and
    merging name their work the same way and find it in MLflow instead (`tracking.store.finished_run`)."""
    manifest = read_manifest(directory)
    return manifest if manifest is not None and manifest.get("fingerprint") == expected_fingerprint else None


def manifest_hash(directory: str | os.PathLike[str]) -> str:
    """Content hash of a finished stage, used as the input hash of the stage after it."""
    path = manifest_path(directory)
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no {MANIFEST_NAME}: the stage that writes it has not finished")
    return file_sha256(path)
