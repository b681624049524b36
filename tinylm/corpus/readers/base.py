"""What every reader shares: its counters, how a file is opened and decoded, and how a cut file is reported.

A reader is a function `(path, stream, config, stats) -> Iterator[Document]` over the
decompressed stream of one file (or one byte range of a dump). Readers stream, so memory
does not grow with the file; bad records are skipped and counted in `stats`, with the
first few record numbers kept for the log; a stream that ends early raises
`TruncatedInputError` after every document before the break has been yielded.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tinylm.config import ExtractConfig
from tinylm.corpus.compression import STREAM_ERRORS, CountingReader, decompressed, plain_name
from tinylm.corpus.wiki.multistream import ByteRange, RangeReader
from tinylm.stats import Stats
from tinylm.storage.documents import Document

Reader = Callable[[Path, IO[bytes], ExtractConfig, Stats], Iterator[Document]]
READ_COUNTERS = ("records", "documents", "lines_with_replaced_bytes")


class TruncatedInputError(Exception):
    """A compressed or XML stream ended before its end marker."""


def reader_stats() -> Stats:
    """A reader's counters, present even at zero so every extraction result has the same fields."""
    return Stats(*READ_COUNTERS, groups=("skipped",))


def source_name(path: Path) -> str:
    """The `source` of a file's documents: its name without compression and format suffixes."""
    name = plain_name(path)
    return name.rsplit(".", 1)[0] if "." in name else name


def decoded_lines(stream: IO[bytes], stats: Stats) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; bytes that are not UTF-8 are replaced and the line counted."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", errors="replace")
            stats.update("lines_with_replaced_bytes")
        yield number, line.rstrip("\r\n")


@contextmanager
def opened(path: Path, stats: Stats, byte_range: ByteRange | None = None, root_tag: bytes | None = None) -> Iterator[IO[bytes]]:
    """The decompressed stream of a file (or of a byte range of a dump); a stream that breaks off raises
    `TruncatedInputError` saying how far it got, once every record before the break is out."""
    counter = CountingReader(open(path, "rb") if byte_range is None else RangeReader(path, byte_range, root_tag or b""))
    try:
        with decompressed(path, counter) if byte_range is None else io.BufferedReader(counter) as stream:
            yield stream
    except io.UnsupportedOperation:
        raise
    except STREAM_ERRORS as error:
        raise TruncatedInputError(
            f"{path}: the compressed stream breaks off after {counter.position} bytes ({stats['records']} records read): {error}"
        ) from error
    except SyntaxError as error:
        raise TruncatedInputError(f"{path}: the XML breaks off after {stats['records']} pages: {error}") from error
    finally:
        counter.close()
