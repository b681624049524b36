"""The Document schema that leaves every corpus stage, and its parquet reader and writer."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import pyarrow as pa
import pyarrow.parquet as pq

from tinylm.stats import Stats
from tinylm.storage.atomic import commit, discard, temp_path_for
from tinylm.storage.manifest import Manifest, manifest_path, write_manifest

STATS_KEY = "tinylm.stats"
DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("lang", pa.string()),
        pa.field("url", pa.string()),
        pa.field("meta", pa.string()),
    ]
)


class Document(TypedDict):
    id: str
    source: str
    title: str | None
    text: str
    lang: str | None
    url: str | None
    meta: str | None


def document_id(source: str, native_id: str | int) -> str:
    """Stable id from the source name and the id the source itself gives the document."""
    return hashlib.blake2b(f"{source}\x1f{native_id}".encode(), digest_size=8).hexdigest()


def make_document(
    source: str,
    native_id: str | int,
    text: str,
    *,
    title: str | None = None,
    lang: str | None = None,
    url: str | None = None,
    meta: str | None = None,
) -> Document:
    return Document(
        id=document_id(source, native_id), source=source, title=title, text=text, lang=lang, url=url, meta=meta
    )


class DocumentWriter:
    """Writes documents to one parquet file in row groups, so memory stays flat.

    The file only appears under its final name when `close()` succeeds; an exception or a
    kill leaves nothing a re-run would mistake for finished output. `stats`, which the
    caller keeps counting in while it writes, goes into the parquet footer at close, so the
    counts are committed atomically with the rows they describe and a re-run that reuses
    the file still reports them.
    """

    def __init__(self, path: str | os.PathLike[str], stats: Stats | None = None, rows_per_group: int = 2048) -> None:
        self.path = Path(path)
        self.stats = stats
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._buffer: list[Document] = []
        self._tmp = temp_path_for(self.path)
        self._writer = pq.ParquetWriter(self._tmp, DOCUMENT_SCHEMA, compression="zstd")

    def write(self, document: Document) -> None:
        self._buffer.append(document)
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=DOCUMENT_SCHEMA))
            self.rows += len(self._buffer)
            self._buffer = []

    def close(self, final_path: str | os.PathLike[str] | None = None) -> None:
        """Finish the file and move it to its final name (or to `final_path` instead)."""
        self._flush()
        if self.stats is not None:
            self._writer.add_key_value_metadata({STATS_KEY: json.dumps(self.stats.as_dict(), ensure_ascii=False)})
        self._writer.close()
        commit(self._tmp, Path(final_path) if final_path is not None else self.path)

    def abort(self) -> None:
        self._writer.close()
        discard(self._tmp)

    def __enter__(self) -> DocumentWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def stored_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The stats a stage stored in a parquet file's footer (empty if it stored none)."""
    metadata = pq.read_metadata(path).metadata or {}
    raw = metadata.get(STATS_KEY.encode())
    return json.loads(raw) if raw else {}


def write_documents(path: str | os.PathLike[str], documents: Iterable[Document]) -> int:
    with DocumentWriter(path) as writer:
        for document in documents:
            writer.write(document)
    return writer.rows


def read_batches(
    path: str | os.PathLike[str], batch_size: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """A parquet file's rows in batches of at most `batch_size`, read one row group at a time.

    `ParquetFile.iter_batches` reads ahead across row groups: handing out 36 MB batches of a
    file of 470 row groups it held 300 MB of Arrow memory, where reading a row group at a
    time holds one (measured on the dedup index's parts). Batches never span row groups.
    """
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns)


def iter_document_batches(
    paths: Iterable[str | os.PathLike[str]], columns: list[str] | None = None, batch_size: int = 1024
) -> Iterator[pa.RecordBatch]:
    for path in paths:
        yield from read_batches(path, batch_size, columns)


def iter_texts(paths: Iterable[str | os.PathLike[str]], batch_size: int = 1024) -> Iterator[str]:
    for batch in iter_document_batches(paths, columns=["text"], batch_size=batch_size):
        yield from batch.column(0).to_pylist()


def corpus_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """The document parquet files of a finished corpus directory, in their canonical order."""
    return sorted(Path(directory).glob("part-*.parquet"))


class ExtractManifest(Manifest):
    """The extract stage's manifest: the raw inputs' hashes, the Document parquet files it wrote, its counts."""

    inputs: dict[str, str] = {}
    files: list[str]
    stats: dict[str, Any] = {}
    config: dict[str, Any] = {}


class CorpusManifest(Manifest):
    """A corpus folder's manifest (the corpus and dedup stages): the inputs' hashes, the parts with their rows, and
    what was kept and dropped for which reason."""

    inputs: dict[str, str] = {}
    parts: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    config: dict[str, Any] = {}


def publish_parts(
    staged: str | os.PathLike[str], directory: str | os.PathLike[str], manifest: CorpusManifest
) -> CorpusManifest:
    """Make the parts written to `staged` the corpus of `directory`, then its manifest; returns the manifest as
    stored.

    A stage writes its new parts beside the old ones, so a run that fails, or refuses to keep nothing, leaves the
    finished corpus untouched. Here the old manifest goes first: a run killed while parts are swapped leaves a folder
    without one, which every reader treats as unfinished and a rerun redoes, never a manifest over other parts."""
    staged, directory = Path(staged), Path(directory)
    new = {path.name: path for path in staged.glob("part-*.parquet")}
    manifest_path(directory).unlink(missing_ok=True)
    for name, path in sorted(new.items()):
        os.replace(path, directory / name)
    for stale in corpus_parts(directory):
        if stale.name not in new:
            stale.unlink()
    return write_manifest(directory, manifest)
