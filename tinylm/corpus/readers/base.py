"""What every reader shares: its counters, how a file is opened and decoded, and how a cut file is reported.

A reader is a function `(path, stream, config, stats) -> Iterator[Document]` over the
decompressed stream of one file (or one byte range of a dump). Readers stream, so memory
does not grow with the file; bad records are skipped and counted in `stats`, with the
first few record numbers kept for the log; a stream that ends early raises
`TruncatedInputError` after every document before the break has been yielded.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import charset_normalizer

from tinylm.config import ExtractConfig
from tinylm.corpus.compression import COMPRESSIONS, STREAM_ERRORS, CountingReader, decompressed, plain_name
from tinylm.corpus.wiki.multistream import ByteRange, RangeReader
from tinylm.stats import Stats
from tinylm.storage.documents import Document

Reader = Callable[[Path, IO[bytes], ExtractConfig, Stats], Iterator[Document]]
READ_COUNTERS = ("records", "documents")


class TruncatedInputError(Exception):
    """A compressed or XML stream ended before its end marker."""


def reader_stats() -> Stats:
    """A reader's counters, present even at zero so every extraction result has the same fields."""
    return Stats(*READ_COUNTERS, groups=("skipped",))


def source_name(path: Path) -> str:
    """The `source` of a file's documents: its name without compression and format suffixes."""
    name = plain_name(path)
    return name.rsplit(".", 1)[0] if "." in name else name


_BYTE_ORDER_MARKS = (  # UTF-32 LE first: its mark begins with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Above this share of NULs and undecodable bytes, a file is most likely not UTF-8 at all.
SUSPECT_SHARE = 0.3
# Chinese files that are not UTF-8 are most often in the legacy encodings of the mainland (GB18030, a superset of
# GBK and GB2312) or of Taiwan and Hong Kong (Big5): a file whose first bytes are mostly not UTF-8 is read in the
# one of these that charset-normalizer finds them coherent in.
CHINESE_ENCODINGS = ["gb18030", "big5", "big5hkscs"]
NOT_UTF8_SHARE = 0.05  # of a file's first characters replaced as UTF-8, from which another encoding is looked for
REPLACED = "\ufffd"


def utf8_stream(stream: IO[bytes], stats: Stats) -> IO[bytes]:
    """The stream as UTF-8 bytes: a byte-order mark, as Windows tools write them (UTF-8, UTF-16, UTF-32),
    is honoured and dropped, so such a file reads as its text rather than as mojibake and NULs; a file in
    GB18030 or Big5 is decoded from it (counted as `read_as.<encoding>`)."""
    head = stream.peek(4)[:4]  # type: ignore[attr-defined]
    for mark, encoding in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            if encoding == "utf-8":
                stream.read(len(mark))
                return stream
            return codecs.EncodedFile(stream, "utf-8", encoding)  # type: ignore[return-value]
    legacy = legacy_chinese_encoding(stream.peek(1 << 16))  # type: ignore[attr-defined]
    if legacy is None:
        return stream
    stats.update(f"read_as.{legacy}")
    return codecs.EncodedFile(stream, "utf-8", legacy, errors="replace")  # type: ignore[return-value]


def legacy_chinese_encoding(head: bytes) -> str | None:
    """GB18030 or Big5 when the first bytes of a file are mostly not UTF-8 and are Chinese text in one of them."""
    text = head.decode("utf-8", errors="replace")
    if text.count(REPLACED) <= NOT_UTF8_SHARE * len(text):
        return None
    best = charset_normalizer.from_bytes(head, cp_isolation=CHINESE_ENCODINGS).best()
    return None if best is None else best.encoding


def decoded_lines(stream: IO[bytes], stats: Stats) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line. A line with bytes its encoding cannot decode is skipped, counted as
    `undecodable_bytes` with its number: replaced bytes would be mojibake in the corpus. Characters that suggest
    another encoding (replaced bytes, NULs) are also counted for `suspect_share`."""
    characters = 0  # summed here and counted once: a counter update per line would cost every reader
    try:
        for number, raw in enumerate(utf8_stream(stream, stats), start=1):
            line = raw.decode("utf-8", errors="replace")
            characters += len(line)
            if REPLACED in line or "\x00" in line:
                stats.update("suspect_characters", line.count(REPLACED) + line.count("\x00"))
                if REPLACED in line:
                    stats.skip("undecodable_bytes", number)
                    continue
            yield number, line.rstrip("\r\n")
    finally:
        stats.update("characters", characters)


def suspect_share(result: dict) -> float:
    """The share of a file's characters that are NULs or replaced bytes (0 for readers that do not count them)."""
    return result.get("suspect_characters", 0) / max(result.get("characters", 0), 1)


@contextmanager
def opened(
    path: Path, stats: Stats, byte_range: ByteRange | None = None, root_tag: bytes | None = None
) -> Iterator[IO[bytes]]:
    """The decompressed stream of a file (or of a byte range of a dump); a stream that breaks off raises
    `TruncatedInputError` saying how far it got, once every record before the break is out."""
    counter = CountingReader(open(path, "rb") if byte_range is None else RangeReader(path, byte_range, root_tag or b""))
    try:
        with decompressed(path, counter) if byte_range is None else io.BufferedReader(counter) as stream:
            yield stream
    except io.UnsupportedOperation:
        raise
    except STREAM_ERRORS as error:
        what = "compressed stream" if path.suffix.lower() in COMPRESSIONS else "file"
        raise TruncatedInputError(
            f"{path}: the {what} breaks off after {counter.position} bytes ({stats['records']} records read): {error}"
        ) from error
    except SyntaxError as error:
        raise TruncatedInputError(f"{path}: the XML breaks off after {stats['records']} pages: {error}") from error
    finally:
        counter.close()
