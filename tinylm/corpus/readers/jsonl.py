"""JSON lines: one record per line, its text in `config.jsonl_text_field`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tinylm.config import ExtractConfig
from tinylm.corpus.readers.base import decoded_lines, opened, source_name, utf8_stream
from tinylm.corpus.readers.wudao import iter_json_array
from tinylm.stats import Stats
from tinylm.storage.documents import Document, make_document


def json_lines(stream: IO[bytes], stats: Stats) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line that parses; the others counted as `invalid_json`."""
    for number, line in decoded_lines(stream, stats):
        if not line.strip():
            continue
        stats.update("records")
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            stats.skip("invalid_json", number)


def record_document(
    source: str, path: Path, record: Any, number: int, config: ExtractConfig, stats: Stats
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
    stats.update("documents")
    return make_document(
        source,
        record.get("id", number),
        text.strip(),
        title=title if isinstance(title, str) else None,
        url=f"file://{path.name}#{number}",
    )


def read_jsonl(path: Path, stream: IO[bytes], config: ExtractConfig, stats: Stats) -> Iterator[Document]:
    source = source_name(path)
    for number, record in json_lines(stream, stats):
        document = record_document(source, path, record, number, config, stats)
        if document is not None:
            yield document


def read_json_lines(path: str | Path, stats: Stats) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each JSON line of a file, compressed or not; bad lines counted in `stats`."""
    path = Path(path)
    with opened(path, stats) as stream:
        yield from json_lines(stream, stats)


def read_json_records(path: str | Path, stats: Stats) -> Iterator[tuple[int, Any]]:
    """(number, value) of each record of a file that holds JSON Lines or one JSON array, whatever its name says:
    chat data ships as both, and `.json` names either. A line number for JSON Lines, the record's position for an
    array; the file's layout is counted as `read_as.json_array` or `read_as.json_lines`."""
    path = Path(path)
    with opened(path, stats) as stream:
        head = stream.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n")  # type: ignore[attr-defined]
        if head.startswith(b"["):
            stats.update("read_as.json_array")
            yield from iter_json_array(utf8_stream(stream, stats), stats)
        else:
            stats.update("read_as.json_lines")
            yield from json_lines(stream, stats)
