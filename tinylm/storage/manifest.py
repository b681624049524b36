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
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tinylm.storage.atomic import atomic_write_json

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


class Manifest(BaseModel):
    """What every stage's manifest.json says: which stage wrote it, and the fingerprint of the work it finished. Each
    stage's own model, beside the stage (`TokenizerManifest`, `ShardsManifest`, `ChatDataManifest`...), adds its
    fields; the stage after it reads them by name, never by string key.

    Keys a model does not name are kept (`extra="allow"`): a manifest written by another version of tinylm still
    reads, and is written back with what it had."""

    model_config = ConfigDict(extra="allow")

    stage: str
    fingerprint: str

    def fields(self) -> dict[str, Any]:
        """The manifest as JSON values: what a flow returns and the command line prints."""
        return self.model_dump(mode="json")


class TokenizedManifest(Manifest):
    """What every tokenized output (token shards, chat data, GRPO's prompts) says of its tokenizer: training builds
    the model's vocabulary from it and refuses a checkpoint of another tokenizer."""

    tokenizer_sha256: str
    tokenizer_dir: str
    vocab_size: int
    eos_id: int | None = None


Kind = TypeVar("Kind", bound=Manifest)


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


def read_manifest(directory: str | os.PathLike[str], kind: type[Kind] = Manifest) -> Kind | None:
    """The manifest of a finished stage as its model, or None when the folder has none (the stage never finished)."""
    path = manifest_path(directory)
    return _as(kind, path, _stored(path)) if path.exists() else None


def _stored(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"manifest {path} is not valid JSON ({error}): run the stage that writes it again") from None


def _as(kind: type[Kind], path: Path, stored: Any) -> Kind:
    try:
        return kind.model_validate(stored)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors()[:3])
        raise ValueError(
            f"manifest {path} is not a {kind.__name__} ({problems}): run the stage that writes that folder again"
        ) from None


def write_manifest(directory: str | os.PathLike[str], manifest: Kind) -> Kind:
    """Write the manifest and return it as stored (JSON types): what a rerun that finds the stage complete reads
    back, so a finished and a resumed command print the same thing."""
    atomic_write_json(manifest_path(directory), manifest.fields())
    return type(manifest).model_validate_json(manifest_path(directory).read_bytes())


def finished_output(
    directory: str | os.PathLike[str], expected_fingerprint: str, kind: type[Kind] = Manifest
) -> Kind | None:
    """The manifest, when `directory` holds the finished output of the work `expected_fingerprint` names; else None.

    This is how every data stage knows it has nothing to do: work is named by `fingerprint` (its kind, settings
    and inputs' content), and a stage writes its manifest, the fingerprint in it, last. Training, evaluation and
    merging name their work the same way and find it in MLflow instead (`tracking.store.finished_run`)."""
    path = manifest_path(directory)
    stored = _stored(path) if path.exists() else {}
    if not isinstance(stored, dict) or stored.get("fingerprint") != expected_fingerprint:
        return None  # another version's or another run's output is redone, whatever its layout
    return _as(kind, path, stored)


def manifest_hash(directory: str | os.PathLike[str]) -> str:
    """Content hash of a finished stage, used as the input hash of the stage after it."""
    path = manifest_path(directory)
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no {MANIFEST_NAME}: the stage that writes it has not finished")
    return file_sha256(path)
