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


# A file holding one JSON object (MOSS's and axolotl's conversation files) is read whole: this bounds what it may take.
MAX_JSON_OBJECT_BYTES = 64 << 20


def read_json_records(path: str | Path, stats: Stats) -> Iterator[tuple[int, Any]]:
    """(number, value) of each record of a file that holds JSON Lines, one JSON array or one JSON object, whatever
    its name says: chat data ships as all three, and `.json` names any. A line number for JSON Lines, the record's
    position for an array, 1 for an object; the file's layout is counted as `read_as.json_array`,
    `read_as.json_object` or `read_as.json_lines`."""
    path = Path(path)
    with opened(path, stats) as stream:
        window = stream.peek(1 << 16)  # type: ignore[attr-defined]
        head = window[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            stats.update("read_as.json_array")
            yield from iter_json_array(utf8_stream(stream, stats), stats)
        elif head.startswith(b"{") and _spans_lines(window):
            stats.update("read_as.json_object")
            stats.update("records")
            yield 1, _json_object(path, utf8_stream(stream, stats))
        else:
            stats.update("read_as.json_lines")
            yield from json_lines(stream, stats)


def _spans_lines(window: bytes) -> bool:
    """Whether a file opening with `{` is one object written over many lines (pretty-printed) rather than JSON
    Lines: its first line is not a whole JSON value."""
    first, newline, _ = window.lstrip(b"\xef\xbb\xbf \t\r\n").partition(b"\n")
    if not newline:  # a first line longer than the window: a long JSON line
        return False
    try:
        json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True
    return False


def _json_object(path: Path, stream: IO[bytes]) -> Any:
    data = stream.read(MAX_JSON_OBJECT_BYTES + 1)
    if len(data) > MAX_JSON_OBJECT_BYTES:
        raise ValueError(
            f"{path}: one JSON object of more than {MAX_JSON_OBJECT_BYTES >> 20} MiB; write its records as JSON Lines"
        )
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: neither JSON Lines nor one JSON value ({error}); fix or remove the file") from None
