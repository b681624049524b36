"""The persistent dedup index: exact keys and MinHash signatures of every document kept so far.

A directory of parquet parts plus `index.json`, which records the settings the
signatures were made with and, for every part, its rows, sha256 and the corpus run that
added it. Signatures are datasketch-compatible (scheme `affine32`, tinylm's shingle
hash), so the parquet is the index's source of truth whatever LSH storage sits on top.
A part added by the very run being redone is ignored, so a run killed after updating
the index and redone cannot mistake its own documents for old ones.

Beside each part lie lookup tables derived from it (`lookup_tables.py`): its
signatures, its sorted exact keys, and its sorted band keys for the current banding.
They are memory-mapped, so checking new documents against the index costs the same
whatever its size; a table that is missing, damaged or made for another banding (the
threshold changed) is rebuilt from the sha256-checked parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import LeanMinHash, MinHashLSH

from tinylm.config import DedupConfig
from tinylm.corpus.dedup import lookup_tables
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


@dataclass(frozen=True)
class PartTables:
    """One part's lookup tables, memory-mapped."""

    signatures: np.ndarray
    exact: np.ndarray
    bands: np.ndarray


def index_settings(config: DedupConfig) -> dict:
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
            return {"settings": index_settings(self.config), "parts": []}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            parts, settings = manifest["parts"], manifest["settings"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CorruptIndexError(f"dedup index file {path} is unreadable: {error}") from error
        if settings != index_settings(self.config):
            raise CorruptIndexError(
                f"dedup index {path} was built with {settings}, not {index_settings(self.config)}: "
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
            if entry["added_by"] != skip_added_by:
                yield self._read_part(entry)

    def _read_part(self, entry: dict) -> IndexPart:
        path = self.directory / entry["file"]
        if not path.exists() or file_sha256(path) != entry["sha256"]:
            raise CorruptIndexError(f"dedup index part {path} is missing or does not match its sha256 in {INDEX_FILE}")
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise CorruptIndexError(f"dedup index part {path} is unreadable: {error}") from error
        signatures = np.frombuffer(b"".join(table.column("signature").to_pylist()), dtype="<u4")
        return IndexPart(
            table.column("id").to_pylist(),
            table.column("exact").to_pylist(),
            signatures.reshape(table.num_rows, self.config.num_perm),
        )

    def tables(self, skip_added_by: str | None = None) -> list[PartTables]:
        """The lookup tables of every non-empty part not added by `skip_added_by`, rebuilt where unusable."""
        found = []
        for entry in self.manifest["parts"]:
            if entry["added_by"] == skip_added_by or entry["rows"] == 0:
                continue
            tables = self._open_tables(entry)
            if tables is None:
                self._write_tables(entry["file"], self._read_part(entry))
                tables = self._open_tables(entry)
            found.append(tables)
        return found

    def _table_paths(self, part_file: str) -> tuple[Path, Path, Path]:
        stem = self.directory / Path(part_file).stem
        bands, rows = banding(self.config)
        return (
            stem.with_name(f"{stem.name}.signatures.npy"),
            stem.with_name(f"{stem.name}.exact.npy"),
            stem.with_name(f"{stem.name}.bands-{bands}x{rows}.npy"),
        )

    def _open_tables(self, entry: dict) -> PartTables | None:
        signatures, exact, bands = self._table_paths(entry["file"])
        count = entry["rows"]
        opened = (
            lookup_tables.open_table(signatures, (count, self.config.num_perm), "<u4"),
            lookup_tables.open_table(exact, (count,), "S16"),
            lookup_tables.open_table(bands, (2, banding(self.config)[0], count), "<u8"),
        )
        return None if any(table is None for table in opened) else PartTables(*opened)

    def _write_tables(self, part_file: str, part: IndexPart) -> None:
        signatures, exact, bands = self._table_paths(part_file)
        lookup_tables.save(signatures, part.signatures.astype("<u4"))
        lookup_tables.save(exact, lookup_tables.sorted_bytes(part.exact_keys, 16))
        lookup_tables.save(bands, lookup_tables.sorted_columns(lookup_tables.band_keys(part.signatures, *banding(self.config))))

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
        self._write_tables(name, part)
        entries.append({"file": name, "rows": len(part.ids), "sha256": file_sha256(self.directory / name), "added_by": added_by})
        self.manifest = {"settings": index_settings(self.config), "parts": entries}
        atomic_write_json(self.directory / INDEX_FILE, self.manifest)


def banding(config: DedupConfig) -> tuple[int, int]:
    """(bands, rows per band): datasketch's optimum for the threshold, num_perm and weights."""
    lsh = lsh_for(config)
    return lsh.b, lsh.r


def lsh_for(config: DedupConfig, storage_config: dict | None = None) -> MinHashLSH:
    return MinHashLSH(
        threshold=config.threshold,
        num_perm=config.num_perm,
        weights=(1 - config.recall_weight, config.recall_weight),
        storage_config=storage_config,
    )


def sketch(signature: np.ndarray, config: DedupConfig) -> LeanMinHash:
    return LeanMinHash(seed=config.seed, hashvalues=signature, scheme="affine32")


def agrees(first: np.ndarray, second: np.ndarray, config: DedupConfig) -> bool:
    """Whether two signatures estimate a Jaccard at or above the threshold (always, without `verify`)."""
    return not config.verify or (first == second).mean() >= config.threshold


class SignatureMatcher:
    """LSH whose keys are row numbers into the signatures it holds, so its matches can be verified."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.lsh = lsh_for(config)
        self.rows: list[np.ndarray] = []

    def add(self, signature: np.ndarray) -> int:
        self.rows.append(signature)
        key = len(self.rows) - 1
        self.lsh.insert(key, sketch(signature, self.config), check_duplication=False)
        return key

    def matches(self, signature: np.ndarray) -> list[int]:
        found = self.lsh.query(sketch(signature, self.config))
        return [key for key in found if agrees(self.rows[key], signature, self.config)]


class LocalKnownDocuments:
    """What earlier corpora kept, looked up in the index's memory-mapped tables (minus the run being redone)."""

    def __init__(self, index: DedupIndex | None, config: DedupConfig, run_key: str) -> None:
        self.config = config
        self.bands, self.rows = banding(config)
        self.parts = index.tables(skip_added_by=run_key) if index is not None else []

    def seen_exact(self, keys: list[bytes]) -> np.ndarray:
        queries = np.array(keys, dtype="S16")
        found = np.zeros(len(keys), dtype=bool)
        for part in self.parts:
            found |= lookup_tables.contains(part.exact, queries)
        return found

    def near(self, signatures: np.ndarray) -> np.ndarray:
        queries = lookup_tables.band_keys(signatures, self.bands, self.rows)
        found = np.zeros(len(signatures), dtype=bool)
        for part in self.parts:
            query, document = lookup_tables.matching_pairs(part.bands, queries)
            if self.config.verify:
                order = np.argsort(document, kind="stable")
                query, document = query[order], document[order]
                query = query[(part.signatures[document] == signatures[query]).mean(axis=1) >= self.config.threshold]
            found[query] = True
        return found

    def add(self, part: IndexPart) -> None:
        """Nothing to do: `DedupIndex.add` writes the part's tables, which the next run opens."""
