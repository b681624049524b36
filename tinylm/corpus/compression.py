"""Compressed input streams: bz2, gzip and zstd, decompressed on a second core, failing loudly when cut.

Every reader reads its file through `decompressed`, so compression is one suffix away
for every format, and a stream that ends early raises instead of ending quietly.
"""

from __future__ import annotations

import bz2
import gzip
import io
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import zstandard

CHUNK = 1 << 20


class ChunkReader(io.RawIOBase):
    """A raw binary stream over any source of byte chunks: the one `readinto` the streams share.

    Subclasses produce chunks with `next_chunk` (b"" at the end). The current chunk is
    consumed through an offset rather than re-sliced, so a chunk is copied once into the
    caller's buffer however small the reads are.
    """

    def __init__(self) -> None:
        super().__init__()
        self._chunk = b""
        self._offset = 0
        self._exhausted = False

    def next_chunk(self) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._offset >= len(self._chunk):
            if self._exhausted:
                return 0
            try:
                self._chunk, self._offset = self.next_chunk(), 0
            except BaseException:
                self._exhausted = True  # a failed source is not asked again (it may block or repeat)
                raise
            self._exhausted = not self._chunk
        size = min(len(buffer), len(self._chunk) - self._offset)
        buffer[:size] = self._chunk[self._offset : self._offset + size]
        self._offset += size
        return size


class CountingReader(io.RawIOBase):
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


class ZstdReader(ChunkReader):
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
            data = self.raw.read(CHUNK)
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


class ReadAhead(ChunkReader):
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
                chunk = self._stream.read(CHUNK)
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


COMPRESSIONS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    ".bz2": lambda raw: bz2.open(raw, "rb"),
    ".gz": lambda raw: gzip.open(raw, "rb"),
    ".zst": lambda raw: io.BufferedReader(ZstdReader(raw), buffer_size=CHUNK),
}
# What a cut stream raises, by library: the readers turn these into one clear message.
STREAM_ERRORS = (EOFError, OSError, zstandard.ZstdError)


def plain_name(path: str | Path) -> str:
    """The file name without its compression suffix."""
    name = Path(path).name
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    return name


def decompressed(path: Path, raw: io.RawIOBase, read_ahead: bool = True) -> IO[bytes]:
    """The decompressed bytes of `raw` (by `path`'s suffix); `read_ahead` pays off only when the whole stream is
    read."""
    buffered = io.BufferedReader(raw, buffer_size=CHUNK)
    opener = COMPRESSIONS.get(path.suffix.lower())
    if opener is None:
        return buffered
    stream = opener(buffered)
    return io.BufferedReader(ReadAhead(stream), buffer_size=CHUNK) if read_ahead else stream
