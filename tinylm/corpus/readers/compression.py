"""A raw binary stream over any source of byte chunks: the one `readinto` the readers share."""

from __future__ import annotations

import io


class ChunkReader(io.RawIOBase):
    """Subclasses produce chunks with `next_chunk` (b"" at the end); this serves them to `readinto`.

    The current chunk is consumed through an offset rather than re-sliced, so a chunk is
    copied once into the caller's buffer however small the reads are.
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
