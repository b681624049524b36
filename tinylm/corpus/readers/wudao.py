"""WuDaoCorpora 2.0: each file one JSON array of {id, uniqueKey, titleUkey, dataType, title, content}."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tinylm.config import ExtractConfig
from tinylm.corpus.compression import CHUNK
from tinylm.corpus.readers.base import REPLACED, source_name, utf8_stream
from tinylm.stats import Stats
from tinylm.storage.documents import Document, make_document

_MAX_JSON_RECORD = 64 << 20
_NEXT_JSON_OBJECT = re.compile(r"\}\s*,\s*\{")
_META_FIELDS = ("dataType", "uniqueKey", "titleUkey")
# WuDao loaders (FlagAI's among them) also read the array wrapped as {"RECORDS": [...]}.
_RECORDS_WRAPPER = re.compile(r'\{\s*"RECORDS"\s*:\s*\[')


def iter_json_array(stream: IO[bytes], stats: Stats) -> Iterator[tuple[int, Any]]:
    """Yield (record number, value) for each element of a top-level JSON array, streaming.

    Only the record being decoded is held in memory (plus one read chunk). A record that
    does not decode is counted as `invalid_json` and the reader resynchronises at the
    next `},{` boundary; an array that ends inside a record, or without its closing `]`,
    raises EOFError once every record before the break is out (the file was cut short).
    The array may stand alone or be wrapped as `{"RECORDS": [...]}`.

    Written by hand rather than with `ijson`, which streams too, for two reasons: ijson's C
    backend is slower on WuDao-shaped arrays (docs/benchmarks.md, "Measured choices"), and it
    cannot resynchronise: one damaged record would end the whole file instead of being skipped and counted.
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer, position, number, at_end = "", 0, 0, False

    def refill() -> bool:
        nonlocal buffer, position, at_end
        chunk = stream.read(CHUNK)
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
    if (wrapper := _RECORDS_WRAPPER.match(buffer, position)) is not None:
        position = wrapper.end()
        skip_separators()
    while position < len(buffer) and buffer[position] != "]":
        number += 1
        stats.update("records")
        try:
            value, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError as error:
            if not at_end and len(buffer) - position < _MAX_JSON_RECORD and refill():
                number -= 1
                stats.update("records", -1)
                continue
            boundary = _NEXT_JSON_OBJECT.search(buffer, position + 1)
            if boundary is None and not buffer[position:].rstrip().endswith("]"):
                raise EOFError(f"the JSON array ends inside record {number}, after {number - 1} records") from error
            stats.skip("invalid_json", number)
            position = boundary.start() + 1 if boundary else len(buffer)
            skip_separators()
            continue
        position = end
        yield number, value
        skip_separators()
    if number and position >= len(buffer):
        raise EOFError(f"the JSON array has no closing ']' after its {number} records")


def _native_id(record: dict, number: int) -> str | int:
    """`uniqueKey` when set, else `id` (0 included: it is the first record's), else the record number."""
    for key in ("uniqueKey", "id"):
        if record.get(key) not in (None, ""):
            return record[key]
    return number


def read_wudao(path: Path, stream: IO[bytes], config: ExtractConfig, stats: Stats) -> Iterator[Document]:
    source = source_name(path)
    for number, record in iter_json_array(utf8_stream(stream, stats), stats):
        content = record.get("content") if isinstance(record, dict) else None
        if not isinstance(content, str):
            stats.skip("no_text_field", number)
            continue
        if not content.strip():
            stats.skip("empty")
            continue
        if REPLACED in content:
            stats.skip("undecodable_bytes", number)
            continue
        stats.update("documents")
        meta = {key: record.get(key) for key in _META_FIELDS if key in record}
        yield make_document(
            source,
            _native_id(record, number),
            content.strip(),
            title=record.get("title") if isinstance(record.get("title"), str) else None,
            url=f"file://{path.name}#{number}",
            meta=json.dumps(meta, ensure_ascii=False),
        )
