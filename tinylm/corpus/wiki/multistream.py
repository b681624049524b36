"""Wikimedia multistream dumps: many independent bz2 streams of 100 pages each.

The `*-multistream-index.txt.bz2` beside such a dump lists `offset:page_id:title` for
every page, where `offset` is the byte position of the bz2 stream holding it. Cutting
the dump at stream boundaries gives byte ranges that decompress and parse on their own,
so one dump becomes many parallel tasks whose outputs, concatenated in range order,
are exactly the serial extraction.

Layout of such a dump: stream 0 holds `<mediawiki ...><siteinfo>...</siteinfo>`, the
page streams follow, and the last stream holds the closing `</mediawiki>`.
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tinylm.corpus.compression import ChunkReader

INDEX_SUFFIX = "-index.txt.bz2"
_ROOT_START = re.compile(rb"<mediawiki\b[^>]*>")
_ROOT_END = b"</mediawiki>"
_READ_SIZE = 1 << 20


class TruncatedRangeError(EOFError):
    """A byte range ended inside a bz2 stream: the dump or its index does not match."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int


def is_multistream_index(path: str | Path) -> bool:
    return Path(path).name.endswith(INDEX_SUFFIX)


def index_for(dump: str | Path) -> Path | None:
    """The index Wikimedia publishes beside `NAME.xml.bz2` as `NAME-index.txt.bz2`, if present."""
    dump = Path(dump)
    if not dump.name.endswith(".xml.bz2"):
        return None
    candidate = dump.with_name(dump.name.removesuffix(".xml.bz2") + INDEX_SUFFIX)
    return candidate if candidate.exists() else None


def dump_for(index: str | Path) -> Path:
    index = Path(index)
    return index.with_name(index.name.removesuffix(INDEX_SUFFIX) + ".xml.bz2")


def stream_offsets(index: str | Path) -> list[int]:
    """Distinct stream start offsets listed in an index, ascending."""
    offsets: set[int] = set()
    with bz2.open(index, "rb") as lines:
        for line in lines:
            head, _, _ = line.partition(b":")
            if head.strip():
                offsets.add(int(head))
    if not offsets:
        raise ValueError(f"multistream index {index} lists no streams")
    return sorted(offsets)


def plan_ranges(offsets: list[int], file_size: int, target_bytes: int) -> list[ByteRange]:
    """Group whole streams, from the first page stream to the end of the file, into ranges of about `target_bytes`."""
    bounds = [*offsets, file_size]
    ranges, start = [], bounds[0]
    for boundary in bounds[1:-1]:
        if boundary - start >= target_bytes:
            ranges.append(ByteRange(start, boundary))
            start = boundary
    ranges.append(ByteRange(start, file_size))
    return ranges


def _decompress_range(path: Path, byte_range: ByteRange) -> Iterator[bytes]:
    """Decompressed bytes of every bz2 stream in the range, read in bounded chunks.

    Raises `TruncatedRangeError` when the file is shorter than the range or the range
    ends part-way through a stream.
    """
    with open(path, "rb") as handle:
        handle.seek(byte_range.start)
        remaining = byte_range.end - byte_range.start
        decompressor, mid_stream = bz2.BZ2Decompressor(), False
        while remaining > 0:
            data = handle.read(min(_READ_SIZE, remaining))
            if not data:
                break
            remaining -= len(data)
            while data:
                yield decompressor.decompress(data)
                mid_stream = not decompressor.eof
                if mid_stream:
                    break
                data = decompressor.unused_data
                decompressor = bz2.BZ2Decompressor()
    if remaining > 0 or mid_stream:
        raise TruncatedRangeError(
            f"{path}: bytes {byte_range.start}-{byte_range.end} end inside a bz2 stream "
            f"({byte_range.end - byte_range.start - remaining} bytes read)"
        )


def root_start_tag(path: str | Path, first_page_offset: int) -> bytes:
    """The `<mediawiki ...>` start tag from the dump's header stream, namespaces included."""
    header = b"".join(_decompress_range(Path(path), ByteRange(0, first_page_offset)))
    match = _ROOT_START.search(header)
    if match is None:
        raise ValueError(f"{path}: no <mediawiki> element in the first {first_page_offset} bytes")
    return match.group()


class RangeReader(ChunkReader):
    """A byte range of a multistream dump, presented as a well-formed XML document.

    The header's root start tag goes first; the closing tag is added at the end unless
    the range already holds it (the dump's last stream does).
    """

    def __init__(self, path: str | Path, byte_range: ByteRange, root_tag: bytes) -> None:
        super().__init__()
        self._chunks = _decompress_range(Path(path), byte_range)
        self._first = root_tag
        self._tail = b""
        self._closed_root = False

    def next_chunk(self) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            return first
        for chunk in self._chunks:
            if chunk:
                self._tail = (self._tail + chunk)[-64:]
                return chunk
        if self._closed_root or self._tail.rstrip().endswith(_ROOT_END):
            return b""
        self._closed_root = True
        return _ROOT_END
