"""The persistent dedup index: exact keys and MinHash signatures of every document kept so far.

A directory of parquet parts plus `index.json`, which records the settings the
signatures were made with and, for every part, its rows, sha256 and the corpus run that
added it. Signatures are datasketch-compatible (scheme `affine32`, tinylm's shingle
hash), so the parquet is the index's source of truth whatever LSH storage sits on top.
A part added by the very run being redone is ignored, so a run killed after updating
the index and redone cannot mistake its own documents for old ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tinylm.config import DedupConfig
from tinylm.storage.atomic import atomic_path, atomic_write_json
from tinylm.storage.manifest import file_sha256

INDEX_FILE = "index.json"
SIGNATURE_SCHEME = "affine32/tinylm-polynomial-shingles-v1"
_SETTINGS = ("num_perm", "seed", "zh_ngram", "en_ngram")


class CorruptIndexError(ValueError):
    """A file of the dedup index cannot be trusted; the message names it."""


@dataclass(frozen=True)
class IndexPart:
    ids: list[str]
    exact_keys: list[bytes]
    signatures: np.ndarray


def _settings(config: DedupConfig) -> dict:
    return {name: getattr(config, name) for name in _SETTINGS} | {"scheme": SIGNATURE_SCHEME}


class DedupIndex:
    def __init__(self, directory: str | Path, config: DedupConfig) -> None:
        self.directory = Path(directory)
        self.config = config
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> dict:
        path = self.directory / INDEX_FILE
        if not path.exists():
            if self.directory.exists() and any(self.directory.glob("part-*.parquet")):
                raise CorruptIndexError(f"{path} is missing but {self.directory} holds index parts; refusing to start empty")
            return {"settings": _settings(self.config), "parts": []}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            parts, settings = manifest["parts"], manifest["settings"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CorruptIndexError(f"dedup index file {path} is unreadable: {error}") from error
        if settings != _settings(self.config):
            raise CorruptIndexError(
                f"dedup index {path} was built with {settings}, not {_settings(self.config)}: "
                "use another index directory or the settings it was built with"
            )
        if not isinstance(parts, list):
            raise CorruptIndexError(f"dedup index file {path} is unreadable: parts is not a list")
        return manifest

    def __len__(self) -> int:
        return sum(part["rows"] for part in self.manifest["parts"])

    def parts(self, skip_added_by: str | None = None) -> Iterator[IndexPart]:
        """Every part, checked against its sha256; parts added by `skip_added_by` are left out."""
        for entry in self.manifest["parts"]:
            if entry["added_by"] == skip_added_by:
                continue
            path = self.directory / entry["file"]
            if not path.exists() or file_sha256(path) != entry["sha256"]:
                raise CorruptIndexError(f"dedup index part {path} is missing or does not match its sha256 in {INDEX_FILE}")
            try:
                table = pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as error:
                raise CorruptIndexError(f"dedup index part {path} is unreadable: {error}") from error
            signatures = np.frombuffer(b"".join(table.column("signature").to_pylist()), dtype="<u4")
            yield IndexPart(
                table.column("id").to_pylist(),
                table.column("exact").to_pylist(),
                signatures.reshape(table.num_rows, self.config.num_perm),
            )

    def add(self, part: IndexPart, added_by: str) -> None:
        """Write a part for one corpus run (replacing that run's earlier part) and commit the manifest."""
        entries = [entry for entry in self.manifest["parts"] if entry["added_by"] != added_by]
        name = f"part-{added_by[:16]}.parquet"
        table = pa.table(
            {
                "id": pa.array(part.ids, pa.string()),
                "exact": pa.array(part.exact_keys, pa.binary(16)),
                "signature": pa.array([row.astype("<u4").tobytes() for row in part.signatures], pa.binary(4 * self.config.num_perm)),
            }
        )
        with atomic_path(self.directory / name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        entries.append({"file": name, "rows": len(part.ids), "sha256": file_sha256(self.directory / name), "added_by": added_by})
        self.manifest = {"settings": _settings(self.config), "parts": entries}
        atomic_write_json(self.directory / INDEX_FILE, self.manifest)
