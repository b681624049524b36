"""Readers that turn one raw corpus file (or one byte range of a dump) into Documents.

Each reader streams, so memory does not grow with the file's size. Bad records are
skipped and counted in `ReadStats`, with the first few record numbers kept for the log;
a compressed stream that ends early raises `TruncatedInputError` after every document
before the break has been yielded.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import json
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
import zstandard

from tinylm.config import ExtractConfig
from tinylm.storage.documents import Document, make_document
from tinylm.corpus.wiki.multistream import ByteRange, RangeReader
from tinylm.corpus.readers.compression import ChunkReader
from tinylm.corpus.wiki.dump import iter_pages, site_dbname
from tinylm.corpus.wiki.markup import wikitext_to_text

_COMPRESSIONS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    ".bz2": lambda raw: bz2.open(raw, "rb"),
    ".gz": lambda raw: gzip.open(raw, "rb"),
    ".zst": lambda raw: io.BufferedReader(_ZstdReader(raw), buffer_size=_CHUNK),
}
_FORMATS = ((".xml", "wiki"), (".jsonl", "jsonl"), (".json", "wudao"), (".txt", "text"), (".parquet", "parquet"))
_KEPT_RECORD_NUMBERS = 5
_CHUNK = 1 << 20
_MAX_JSON_RECORD = 64 << 20
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:disambiguation|disambig|dab|hndis|geodis|消歧义|消歧義|disambig-cleanup)\s*[|}]",
    re.I,
)
_DISAMBIGUATION_TITLE = re.compile(r"\((?:disambiguation|消歧义|消歧義)\)$", re.I)
_NEXT_JSON_OBJECT = re.compile(r"\}\s*,\s*\{")


class TruncatedInputError(Exception):
    """A compressed or XML stream ended before its end marker."""


@dataclass
class ReadStats:
    records: int = 0
    documents: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad_records: list[int] = field(default_factory=list)
    replaced_lines: int = 0

    def skip(self, reason: str, record: int | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if record is not None and len(self.bad_records) < _KEPT_RECORD_NUMBERS:
            self.bad_records.append(record)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "documents": self.documents,
            "skipped": dict(sorted(self.skipped.items())),
            "first_bad_records": self.bad_records,
            "lines_with_replaced_bytes": self.replaced_lines,
        }


def plain_name(path: str | Path) -> str:
    """The file name without its compression suffix."""
    name = Path(path).name
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    return name


def input_format(path: str | os.PathLike[str]) -> str:
    name = plain_name(path).lower()
    for suffix, kind in _FORMATS:
        if name.endswith(suffix):
            return kind
    raise ValueError(
        f"{path}: unknown corpus format (expected .xml, .jsonl, .json (WuDao), .txt or .parquet, "
        "optionally compressed as .bz2, .gz or .zst)"
    )


def _source_name(path: Path) -> str:
    name = plain_name(path)
    return name.rsplit(".", 1)[0] if "." in name else name


class _CountingReader(io.RawIOBase):
    """Wraps the raw file so a truncation message can say how many bytes of it were read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.position = 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self.raw.readinto(buffer) or 0
        self.position += count
        return count

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()


class _ZstdReader(ChunkReader):
    """zstd frames, one after another, failing like bz2 and gzip do when the last one is cut.

    (zstandard's own stream reader ends quietly on a truncated frame, which would lose the
    tail of a corpus without a word.)
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._fed = False

    def next_chunk(self) -> bytes:
        while True:
            data = self.raw.read(_CHUNK)
            if not data:
                if self._fed and not self._decompressor.eof:
                    raise EOFError("zstd frame ends before its end marker")
                return b""
            output = b""
            while data:
                self._fed = True
                output += self._decompressor.decompress(data)
                data = b""
                if self._decompressor.eof:
                    data = self._decompressor.unused_data
                    self._decompressor = zstandard.ZstdDecompressor().decompressobj()
                    self._fed = False
            if output:
                return output


class _ReadAhead(ChunkReader):
    """Decompresses in a background thread while the caller parses.

    bz2, gzip and zstd release the GIL while they work, so on a second core the
    decompression costs no wall time. The queue holds a few chunks at most, so memory
    stays bounded; an error in the thread is raised in the reader, where it belongs.
    """

    def __init__(self, stream: IO[bytes], depth: int = 4) -> None:
        super().__init__()
        self._stream = stream
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stopped.is_set():
                chunk = self._stream.read(_CHUNK)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as error:  # handed to the reading thread, re-raised there
            self._put(error)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_chunk(self) -> bytes:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._stream.close()
        super().close()


def _decompressed(path: Path, raw: io.RawIOBase, read_ahead: bool = True) -> IO[bytes]:
    """The decompressed bytes of `raw`; `read_ahead` pays off only when the whole stream is read."""
    buffered = io.BufferedReader(raw, buffer_size=_CHUNK)
    opener = _COMPRESSIONS.get(path.suffix.lower())
    if opener is None:
        return buffered
    stream = opener(buffered)
    return io.BufferedReader(_ReadAhead(stream), buffer_size=_CHUNK) if read_ahead else stream


def _decoded_lines(stream: IO[bytes], stats: ReadStats) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            stats.replaced_lines += 1
        yield number, line.rstrip("\r\n")


def _read_text(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    source = _source_name(path)
    block: list[str] = []

    def emit(text: str) -> Iterator[Document]:
        stats.records += 1
        stats.documents += 1
        yield make_document(source, stats.records, text.strip(), url=f"file://{path.name}#{stats.records}")

    for _, line in _decoded_lines(stream, stats):
        if not line.strip():
            if block:
                yield from emit("\n".join(block))
                block = []
        elif config.text_mode == "line":
            yield from emit(line)
        else:
            block.append(line)
    if block:
        yield from emit("\n".join(block))


def _record_document(
    source: str, path: Path, record: Any, number: int, config: ExtractConfig, stats: ReadStats
) -> Document | None:
    """A document from one JSON record, or None (counted) when it has no usable text."""
    text = record.get(config.jsonl_text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        stats.skip("no_text_field", number)
        return None
    if not text.strip():
        stats.skip("empty")
        return None
    title = record.get("title")
    stats.documents += 1
    return make_document(
        source, record.get("id", number), text.strip(), title=title if isinstance(title, str) else None, url=f"file://{path.name}#{number}"
    )


def _json_lines(stream: IO[bytes], stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line that parses; the others counted as `invalid_json`."""
    for number, line in _decoded_lines(stream, stats):
        if not line.strip():
            continue
        stats.records += 1
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            stats.skip("invalid_json", number)


def _read_jsonl(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    source = _source_name(path)
    for number, record in _json_lines(stream, stats):
        document = _record_document(source, path, record, number, config, stats)
        if document is not None:
            yield document


def iter_json_array(stream: IO[bytes], stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """Yield (record number, value) for each element of a top-level JSON array, streaming.

    Only the record being decoded is held in memory (plus one read chunk). A record that
    does not decode is counted as `invalid_json` and the reader resynchronises at the
    next `},{` boundary.
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer, position, number, at_end = "", 0, 0, False

    def refill() -> bool:
        nonlocal buffer, position, at_end
        chunk = stream.read(_CHUNK)
        buffer = buffer[position:] + text.decode(chunk, final=not chunk)
        position = 0
        at_end = not chunk
        return bool(chunk)

    def skip_separators() -> None:
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,[\ufeff":
                position += 1
            if position < len(buffer) or not refill():
                return

    skip_separators()
    while position < len(buffer) and buffer[position] != "]":
        number += 1
        stats.records += 1
        try:
            value, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            if not at_end and len(buffer) - position < _MAX_JSON_RECORD and refill():
                number -= 1
                stats.records -= 1
                continue
            stats.skip("invalid_json", number)
            boundary = _NEXT_JSON_OBJECT.search(buffer, position + 1)
            position = boundary.start() + 1 if boundary else len(buffer)
            skip_separators()
            continue
        position = end
        yield number, value
        skip_separators()


def _read_wudao(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    """WuDaoCorpora 2.0: a JSON array of {id, uniqueKey, titleUkey, dataType, title, content}."""
    source = _source_name(path)
    for number, record in iter_json_array(stream, stats):
        content = record.get("content") if isinstance(record, dict) else None
        if not isinstance(content, str):
            stats.skip("no_text_field", number)
            continue
        if not content.strip():
            stats.skip("empty")
            continue
        stats.documents += 1
        meta = {key: record.get(key) for key in ("dataType", "uniqueKey", "titleUkey") if key in record}
        yield make_document(
            source,
            record.get("uniqueKey") or record.get("id") or number,
            content.strip(),
            title=record.get("title") if isinstance(record.get("title"), str) else None,
            url=f"file://{path.name}#{number}",
            meta=json.dumps(meta, ensure_ascii=False),
        )


def _read_parquet(path: Path, config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    source = _source_name(path)
    parquet = pq.ParquetFile(path)
    columns = [config.parquet_text_column] + (["title"] if "title" in parquet.schema_arrow.names else [])
    if config.parquet_text_column not in parquet.schema_arrow.names:
        raise ValueError(f"{path} has no column {config.parquet_text_column!r} (columns: {parquet.schema_arrow.names})")
    for batch in parquet.iter_batches(batch_size=1024, columns=columns):
        for row in batch.to_pylist():
            stats.records += 1
            text = row[config.parquet_text_column]
            if not isinstance(text, str) or not text.strip():
                stats.skip("empty")
                continue
            stats.documents += 1
            yield make_document(source, stats.records, text.strip(), title=row.get("title"), url=f"file://{path.name}#{stats.records}")


def _is_disambiguation(title: str, markup: str) -> bool:
    return bool(_DISAMBIGUATION_TITLE.search(title) or _DISAMBIGUATION.search(markup))


def _read_wiki(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    with _decompressed(path, _CountingReader(open(path, "rb")), read_ahead=False) as header:
        source = site_dbname(header) or plain_name(path).split("-")[0]
    language = source.removesuffix("wiki").replace("_", "-")
    for page in iter_pages(stream):
        stats.records += 1
        if page.namespace not in config.namespaces:
            stats.skip("other_namespace")
            continue
        if page.redirect:
            stats.skip("redirect")
            continue
        if config.skip_disambiguation and _is_disambiguation(page.title, page.text):
            stats.skip("disambiguation")
            continue
        text = wikitext_to_text(page.text, variant=config.variant, keep_headings=config.keep_headings)
        if not text:
            stats.skip("empty")
            continue
        stats.documents += 1
        yield make_document(
            source,
            page.page_id,
            text,
            title=page.title,
            url=f"https://{language}.wikipedia.org/wiki?curid={page.page_id}",
            meta=json.dumps({"page_id": page.page_id, "timestamp": page.timestamp}),
        )


_STREAM_READERS = {"text": _read_text, "jsonl": _read_jsonl, "wudao": _read_wudao, "wiki": _read_wiki}


def read_documents(
    path: str | os.PathLike[str],
    config: ExtractConfig,
    stats: ReadStats,
    byte_range: ByteRange | None = None,
    root_tag: bytes | None = None,
) -> Iterator[Document]:
    """Yield the documents of one raw file, or of one byte range of a multistream dump."""
    path = Path(path)
    kind = input_format(path)
    if kind == "parquet":
        yield from _read_parquet(path, config, stats)
        return
    with _opened(path, stats, byte_range, root_tag) as stream:
        yield from _STREAM_READERS[kind](path, stream, config, stats)


def read_json_lines(path: str | os.PathLike[str], stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each JSON line of a file, compressed or not; bad lines counted in `stats`."""
    path = Path(path)
    with _opened(path, stats) as stream:
        yield from _json_lines(stream, stats)


@contextmanager
def _opened(path: Path, stats: ReadStats, byte_range: ByteRange | None = None, root_tag: bytes | None = None) -> Iterator[IO[bytes]]:
    """The decompressed stream of a file (or of a byte range of a dump); a stream that breaks off raises
    `TruncatedInputError` saying how far it got, once every record before the break is out."""
    counter = _CountingReader(open(path, "rb"))
    if byte_range is not None:
        counter.close()
        counter = _CountingReader(RangeReader(path, byte_range, root_tag or b""))
    try:
        with _decompressed(path, counter) if byte_range is None else io.BufferedReader(counter) as stream:
            yield stream
    except io.UnsupportedOperation:
        raise
    except (EOFError, OSError, zstandard.ZstdError) as error:
        raise TruncatedInputError(
            f"{path}: the compressed stream breaks off after {counter.position} bytes "
            f"({stats.records} records read): {error}"
        ) from error
    except SyntaxError as error:
        raise TruncatedInputError(f"{path}: the XML breaks off after {stats.records} pages: {error}") from error
    finally:
        counter.close()
