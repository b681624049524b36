"""Readers that turn one raw corpus file into Documents, counting what they skip.

Each reader streams its file, so memory does not grow with the file's size. Bad records
are skipped and counted in `ReadStats` (with the first few line numbers kept for the
log); a compressed stream that ends early raises `TruncatedInputError` after every
document before the break has been yielded.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tinylm.config import ExtractConfig
from tinylm.storage.documents import Document, make_document
from tinylm.tasks.wikidump import iter_pages, site_dbname
from tinylm.tasks.wikitext import wikitext_to_text

_COMPRESSIONS = {".bz2": bz2.open, ".gz": gzip.open}
_KEPT_LINE_NUMBERS = 5


class TruncatedInputError(Exception):
    """A compressed or XML stream ended before its end marker."""


@dataclass
class ReadStats:
    records: int = 0
    documents: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    bad_lines: list[int] = field(default_factory=list)
    replaced_lines: int = 0

    def skip(self, reason: str, line: int | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if line is not None and len(self.bad_lines) < _KEPT_LINE_NUMBERS:
            self.bad_lines.append(line)

    def as_dict(self) -> dict[str, object]:
        return {
            "records": self.records,
            "documents": self.documents,
            "skipped": dict(sorted(self.skipped.items())),
            "first_bad_lines": self.bad_lines,
            "lines_with_replaced_bytes": self.replaced_lines,
        }


def _plain_name(path: Path) -> str:
    name = path.name
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    return name


def input_format(path: str | os.PathLike[str]) -> str:
    name = _plain_name(Path(path)).lower()
    for suffix, kind in ((".xml", "wiki"), (".jsonl", "jsonl"), (".txt", "text"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{path}: unknown corpus format (expected .xml[.bz2|.gz], .jsonl[.gz|.bz2], .txt[.gz|.bz2] or .parquet)")


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


def _open(path: Path, counter: _CountingReader) -> IO[bytes]:
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    opener = _COMPRESSIONS.get(path.suffix.lower())
    return opener(buffered, "rb") if opener else buffered  # type: ignore[return-value]


def _decoded_lines(stream: IO[bytes], stats: ReadStats) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            stats.replaced_lines += 1
        yield number, line.rstrip("\r\n")


def _read_text(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    source = _plain_name(path).removesuffix(".txt")
    block: list[str] = []
    ordinal = 0

    def emit(text: str) -> Iterator[Document]:
        nonlocal ordinal
        stats.records += 1
        ordinal += 1
        if text.strip():
            stats.documents += 1
            yield make_document(source, ordinal, text.strip(), url=f"file://{path.name}#{ordinal}")
        else:
            stats.skip("empty")

    for _, line in _decoded_lines(stream, stats):
        if config.text_mode == "line":
            if line.strip():
                yield from emit(line)
        elif line.strip():
            block.append(line)
        elif block:
            yield from emit("\n".join(block))
            block = []
    if block:
        yield from emit("\n".join(block))


def _read_jsonl(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    source = _plain_name(path).removesuffix(".jsonl")
    for number, line in _decoded_lines(stream, stats):
        if not line.strip():
            continue
        stats.records += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            stats.skip("invalid_json", number)
            continue
        text = record.get(config.jsonl_text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            stats.skip("no_text_field", number)
            continue
        if not text.strip():
            stats.skip("empty")
            continue
        native_id = record.get("id", number)
        title = record.get("title") if isinstance(record.get("title"), str) else None
        stats.documents += 1
        yield make_document(source, native_id, text.strip(), title=title, url=f"file://{path.name}#L{number}")


def _read_wiki(path: Path, stream: IO[bytes], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    with _open(path, _CountingReader(open(path, "rb"))) as header:  # noqa: SIM117
        source = site_dbname(header) or _plain_name(path).split("-")[0]
    for page in iter_pages(stream):
        stats.records += 1
        if page.namespace not in config.namespaces:
            stats.skip("other_namespace")
            continue
        if page.redirect:
            stats.skip("redirect")
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
            url=f"https://{source.removesuffix('wiki')}.wikipedia.org/wiki?curid={page.page_id}",
            meta=json.dumps({"page_id": page.page_id, "timestamp": page.timestamp}),
        )


_READERS = {"text": _read_text, "jsonl": _read_jsonl, "wiki": _read_wiki}


def read_documents(path: str | os.PathLike[str], config: ExtractConfig, stats: ReadStats) -> Iterator[Document]:
    """Yield the documents of one raw file, whatever its format and compression."""
    path = Path(path)
    kind = input_format(path)
    if kind == "parquet":
        raise ValueError(f"{path}: parquet inputs are already documents; pass them to the dedup stage")
    counter = _CountingReader(open(path, "rb"))
    try:
        with _open(path, counter) as stream:
            yield from _READERS[kind](path, stream, config, stats)
    except (EOFError, OSError) as error:
        raise TruncatedInputError(
            f"{path}: the compressed stream ends early after {counter.position} bytes "
            f"({stats.records} records read): {error}"
        ) from error
    except SyntaxError as error:
        raise TruncatedInputError(
            f"{path}: XML breaks off after {counter.position} bytes ({stats.records} pages read): {error}"
        ) from error
    finally:
        counter.close()
