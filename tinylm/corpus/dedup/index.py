"""The persistent dedup index: exact keys and MinHash signatures of every document kept so far.

A directory of parquet parts plus `index.json`, which records the settings the
signatures were made with and, for every part, its rows, sha256 and the corpus run that
added it. Signatures are datasketch-compatible (scheme `affine32`, tinylm's shingle
hash), so the parquet is the index's source of truth whatever LSH storage sits on top.
Each part belongs to one corpus (`CorpusKey`: its output folder in the workspace). A run that (re)makes a corpus
ignores that corpus's own part and then replaces it, so a rerun with other settings (a filter threshold, the eval
sets that feed decontamination) is deduplicated against the other corpora and earlier refreshes, never against its
own previous version, which would remove every document as a duplicate of itself; and a run killed after updating
the index and redone cannot mistake its own documents for old ones.

Beside each part lie lookup tables derived from it (`lookup_tables.py`): its
signatures, its sorted exact keys, and its sorted band keys for the current banding.
They are memory-mapped, so checking new documents against the index costs the same
whatever its size; a table that is missing, damaged or made for another banding (the
threshold changed) is rebuilt from the sha256-checked parquet.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import LeanMinHash, MinHashLSH
from numpy.lib.format import open_memmap
from pydantic import BaseModel, ConfigDict, ValidationError

from tinylm.config import DedupConfig
from tinylm.corpus.dedup import lookup_tables
from tinylm.storage.atomic import atomic_path, atomic_write_json
from tinylm.storage.documents import read_batches
from tinylm.storage.manifest import file_sha256

INDEX_FILE = "index.json"
SIGNATURE_SCHEME = "affine32/tinylm-polynomial-shingles-v1"
_SETTINGS = ("num_perm", "seed", "zh_ngram", "en_ngram")


class CorruptIndexError(ValueError):
    """A file of the dedup index cannot be trusted; the message names it."""


@dataclass(frozen=True)
class CorpusKey:
    """The corpus a dedup run makes, as the index names its entries: `name` is the corpus's output folder relative
    to its workspace (`corpus/default`, `corpus/refresh-2026-12`), stable across reruns with other settings and
    distinct for every corpus. `legacy_runs` are the fingerprints an older index tagged this corpus's entries with
    (read from the folder's manifest), so an index written before corpus keys still treats them as this corpus's."""

    name: str
    legacy_runs: tuple[str, ...] = ()

    def owns(self, tag: str | None) -> bool:
        return tag is not None and (tag == self.name or tag in self.legacy_runs)


def as_corpus_key(key: CorpusKey | str) -> CorpusKey:
    return key if isinstance(key, CorpusKey) else CorpusKey(key)


class IndexEntry(BaseModel):
    """One part of the index: its parquet file, rows and sha256, and the corpus it holds (an older index names the run
    that added it, `added_by`)."""

    model_config = ConfigDict(extra="allow")

    file: str
    rows: int
    sha256: str
    corpus: str | None = None
    added_by: str | None = None


class IndexFile(BaseModel):
    """index.json: the settings every part was built with, and the parts."""

    model_config = ConfigDict(extra="allow")

    settings: dict[str, Any]
    parts: list[IndexEntry]


def _owner(entry: IndexEntry) -> str | None:
    """The corpus an index entry belongs to (an older index: the run that added it)."""
    return entry.corpus if entry.corpus is not None else entry.added_by


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
        self.index = self._read_index()

    def _read_index(self) -> IndexFile:
        path = self.directory / INDEX_FILE
        if not path.exists():
            if self.directory.exists() and any(self.directory.glob("part-*.parquet")):
                raise CorruptIndexError(
                    f"{path} is missing but {self.directory} holds index parts; refusing to start empty"
                )
            return IndexFile(settings=index_settings(self.config), parts=[])
        try:
            index = IndexFile.model_validate_json(path.read_bytes())
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(map(str, problem["loc"])) or "file"
            raise CorruptIndexError(f"dedup index file {path} is unreadable: {where}: {problem['msg']}") from None
        if index.settings != index_settings(self.config):
            raise CorruptIndexError(
                f"dedup index {path} was built with {index.settings}, not {index_settings(self.config)}: "
                "use another index directory or the settings it was built with"
            )
        return index

    def __len__(self) -> int:
        return sum(part.rows for part in self.index.parts)

    def parts(self, skip: CorpusKey | None = None) -> Iterator[IndexPart]:
        """Every part, checked against its sha256; the parts of corpus `skip` are left out."""
        for entry in self.index.parts:
            if skip is None or not skip.owns(_owner(entry)):
                yield self._read_part(entry)

    def _read_part(self, entry: IndexEntry) -> IndexPart:
        batches = list(self._part_batches(entry))
        return IndexPart(
            [doc_id for batch in batches for doc_id in batch.ids],
            [key for batch in batches for key in batch.exact_keys],
            np.concatenate([batch.signatures for batch in batches])
            if batches
            else np.zeros((0, self.config.num_perm), np.uint32),
        )

    def _part_batches(self, entry: IndexEntry) -> Iterator[IndexPart]:
        """A part's rows in batches, after checking its sha256."""
        path = self.directory / entry.file
        if not path.exists() or file_sha256(path) != entry.sha256:
            raise CorruptIndexError(f"dedup index part {path} is missing or does not match its sha256 in {INDEX_FILE}")
        try:
            yield from read_part(path, self.config.num_perm)
        except (pa.ArrowInvalid, OSError) as error:
            raise CorruptIndexError(f"dedup index part {path} is unreadable: {error}") from error

    def tables(self, skip: CorpusKey | None = None) -> list[PartTables]:
        """The lookup tables of every non-empty part not of corpus `skip`, rebuilt where unusable."""
        found = []
        for entry in self.index.parts:
            if (skip is not None and skip.owns(_owner(entry))) or entry.rows == 0:
                continue
            tables = self._open_tables(entry)
            if tables is None:
                self._write_tables(entry, self._part_batches(entry))
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

    def _open_tables(self, entry: IndexEntry) -> PartTables | None:
        signatures, exact, bands = self._table_paths(entry.file)
        count = entry.rows
        opened = (
            lookup_tables.open_table(signatures, (count, self.config.num_perm), "<u4"),
            lookup_tables.open_table(exact, (count,), "S16"),
            lookup_tables.open_table(bands, (2, banding(self.config)[0], count), "<u8"),
        )
        return None if any(table is None for table in opened) else PartTables(*opened)

    def _write_tables(self, entry: IndexEntry, batches: Iterator[IndexPart]) -> None:
        """A part's tables, built a batch and then a band at a time: memory grows with its exact keys only."""
        signatures_path, exact_path, bands_path = self._table_paths(entry.file)
        rows, (bands, band_rows) = entry.rows, banding(self.config)
        if rows == 0:
            return
        with atomic_path(signatures_path) as tmp:
            signatures = open_memmap(tmp, mode="w+", dtype="<u4", shape=(rows, self.config.num_perm))
            exact, written = [], 0
            for batch in batches:
                signatures[written : written + len(batch.ids)] = batch.signatures
                exact.append(np.array(batch.exact_keys, dtype="S16"))
                written += len(batch.ids)
            signatures.flush()
        lookup_tables.save(exact_path, np.sort(np.concatenate(exact)))
        signatures = np.load(signatures_path, mmap_mode="r")
        with atomic_path(bands_path) as tmp:
            table = open_memmap(tmp, mode="w+", dtype="<u8", shape=(2, bands, rows))
            for band in range(bands):
                keys = lookup_tables.band_keys(signatures[:, band * band_rows : (band + 1) * band_rows], 1, band_rows)
                table[:, band] = lookup_tables.sorted_columns(keys)[:, 0]
            table.flush()

    def add(self, part_file: Path, corpus: CorpusKey) -> None:
        """Copy in a part written by `PartWriter` for `corpus`, replacing that corpus's earlier part, and commit the
        manifest; the replaced part's files go once the manifest no longer names them."""
        replaced = [entry for entry in self.index.parts if corpus.owns(_owner(entry))]
        entries = [entry for entry in self.index.parts if not corpus.owns(_owner(entry))]
        name = f"part-{hashlib.sha256(corpus.name.encode()).hexdigest()[:16]}.parquet"
        with atomic_path(self.directory / name) as tmp:
            shutil.copyfile(part_file, tmp)
        rows = pq.ParquetFile(part_file).metadata.num_rows
        entry = IndexEntry(file=name, rows=rows, sha256=file_sha256(self.directory / name), corpus=corpus.name)
        self._write_tables(entry, read_part(part_file, self.config.num_perm))
        self.index = IndexFile(settings=index_settings(self.config), parts=[*entries, entry])
        atomic_write_json(self.directory / INDEX_FILE, self.index.model_dump(mode="json", exclude_none=True))
        for old in replaced:
            if old.file != name:
                stem = Path(old.file).stem
                for path in [self.directory / old.file, *self.directory.glob(f"{stem}.*.npy")]:
                    path.unlink(missing_ok=True)


class PartWriter:
    """Streams index rows (id, exact key, signature) to a parquet part, so a part of any size is written in flat
    memory."""

    def __init__(self, path: Path, num_perm: int) -> None:
        self.path, self.width = path, 4 * num_perm
        schema = pa.schema([("id", pa.string()), ("exact", pa.binary(16)), ("signature", pa.binary(self.width))])
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, part: IndexPart) -> None:
        rows = len(part.ids)
        exact = np.array(part.exact_keys, dtype="S16").tobytes()
        signatures = np.ascontiguousarray(part.signatures, dtype="<u4").tobytes()
        self._writer.write_table(
            pa.table(
                {
                    "id": pa.array(part.ids, pa.string()),
                    "exact": pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), rows, [None, pa.py_buffer(exact)]),
                    "signature": pa.FixedSizeBinaryArray.from_buffers(
                        pa.binary(self.width), rows, [None, pa.py_buffer(signatures)]
                    ),
                }
            )
        )

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self._writer.close()


def read_part(path: Path, num_perm: int, batch_rows: int = 65536) -> Iterator[IndexPart]:
    """The rows of a parquet part in batches."""
    for batch in read_batches(path, batch_rows):
        signatures = _fixed_width_values(batch.column("signature"), 4 * num_perm).view("<u4")
        yield IndexPart(
            batch.column("id").to_pylist(),
            batch.column("exact").to_pylist(),
            signatures.reshape(batch.num_rows, num_perm),
        )


def _fixed_width_values(array: pa.FixedSizeBinaryArray, width: int) -> np.ndarray:
    """The bytes of a fixed-width binary array's values back to back, without one Python object per value."""
    return np.frombuffer(array.buffers()[1], dtype=np.uint8)[array.offset * width : (array.offset + len(array)) * width]


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


class LocalKnownDocuments:
    """What the other corpora kept, looked up in the index's memory-mapped tables (minus the corpus being made)."""

    def __init__(self, index: DedupIndex | None, config: DedupConfig, corpus: CorpusKey) -> None:
        self.config, self.corpus = config, corpus
        self.bands, self.rows = banding(config)
        self.parts = index.tables(skip=corpus) if index is not None else []

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

    def add(self, part_file: Path) -> None:
        """Nothing to do: `DedupIndex.add` writes the part's tables, which the next run opens."""
