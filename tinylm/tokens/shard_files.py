"""Token shards: headerless little-endian uint16/uint32 ids, a fixed number per file.

Any tool that can `numpy.memmap` reads them; the manifest says the dtype, the token
count of each file and its sha256, so a truncated or swapped file is caught on open.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from tinylm.storage.atomic import atomic_path
from tinylm.storage.manifest import TokenizedManifest, file_sha256, read_manifest


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocabulary up to 65536), uint32 beyond."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


class ShardEntry(BaseModel):
    """One shard file: its token count (its size), documents, tokens per source, and sha256."""

    file: str
    tokens: int
    documents: int
    sources: dict[str, int] = {}
    sha256: str


class ShardSplit(BaseModel):
    shards: list[ShardEntry] = []
    total_tokens: int = 0
    documents: int = 0


class ShardsManifest(TokenizedManifest):
    """The shards stage's manifest: the training shards (the split's fields at the top level), the validation split,
    the token dtype, and how the sources were mixed."""

    dtype: str
    shard_tokens: int
    shards: list[ShardEntry]
    total_tokens: int
    documents: int
    validation: ShardSplit = ShardSplit()
    sources: dict[str, dict[str, int | float]] = {}
    mixing: dict[str, Any] = {}


TRAIN_PREFIX = "shard"
VALIDATION_PREFIX = "val"


def shard_name(index: int, prefix: str = TRAIN_PREFIX) -> str:
    return f"{prefix}-{index:05d}.bin"


class ShardWriter:
    """Appends documents' token ids and cuts them into shards of exactly `shard_tokens` ids.

    Only the pending tail (less than one shard) is held in memory. Each shard records how
    many documents end in it and how many of its tokens came from each source.
    """

    def __init__(self, directory: str | Path, shard_tokens: int, dtype: np.dtype, prefix: str = TRAIN_PREFIX) -> None:
        self.directory = Path(directory)
        self.shard_tokens = shard_tokens
        self.dtype = dtype
        self.prefix = prefix
        self.shards: list[dict] = []
        self._pending: deque[tuple[np.ndarray, str, bool]] = deque()
        self._pending_tokens = 0

    def add(self, ids: np.ndarray, source: str) -> None:
        """Add one document's ids (its separator already appended)."""
        self._pending.append((ids.astype(self.dtype, copy=False), source, True))
        self._pending_tokens += len(ids)
        while self._pending_tokens >= self.shard_tokens:
            self._write(self.shard_tokens)

    def close(self) -> list[dict]:
        if self._pending_tokens:
            self._write(self._pending_tokens)
        return self.shards

    def _write(self, count: int) -> None:
        pieces, sources, documents, taken = [], Counter(), 0, 0
        while taken < count:
            ids, source, ends_here = self._pending.popleft()
            room = count - taken
            if len(ids) > room:
                self._pending.appendleft((ids[room:], source, ends_here))
                ids, ends_here = ids[:room], False
            pieces.append(ids)
            sources[source] += len(ids)
            documents += ends_here
            taken += len(ids)
        self._pending_tokens -= count
        path = self.directory / shard_name(len(self.shards), self.prefix)
        with atomic_path(path) as tmp:
            np.concatenate(pieces).astype(self.dtype, copy=False).tofile(tmp)
        self.shards.append(
            {
                "file": path.name,
                "tokens": count,
                "documents": documents,
                "sources": dict(sources),
                "sha256": file_sha256(path),
            }
        )


@dataclass(frozen=True)
class ShardSet:
    """The shards of one manifest, memory-mapped and checked against it."""

    directory: Path
    manifest: ShardsManifest
    arrays: list[np.memmap]

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size


def _opened_shard(path: Path, shard: ShardEntry, dtype: np.dtype, vocab_size: int, verify_checksum: bool) -> np.memmap:
    """The shard memory-mapped, once its sha256 (if asked) and the range of its ids are checked: a shard
    edited in place, or written with another tokenizer, is refused here, naming the file, not deep in torch."""
    if verify_checksum and file_sha256(path) != shard.sha256:
        raise ValueError(
            f"shard {path} does not match its sha256 in the manifest: it changed after the shards stage wrote it; "
            "rebuild the shards (`tinylm shards`), or set train.verify_shards: false to train on it anyway"
        )
    array = np.memmap(path, dtype=dtype, mode="r")
    if len(array) and (largest := int(array.max())) >= vocab_size:
        raise ValueError(
            f"shard {path} holds token id {largest}, outside the vocabulary of {vocab_size} ids in its manifest: "
            "it is damaged or was written with another tokenizer; rebuild the shards (`tinylm shards`)"
        )
    return array


def open_shards(
    directory: str | Path, split: Literal["train", "validation"] = "train", verify_checksums: bool = False
) -> ShardSet:
    """Memory-map every shard of a split; refuse, naming the file, any whose size, ids or (when asked) sha256
    disagree with the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory, ShardsManifest)
    if manifest is None:
        raise FileNotFoundError(f"{directory} has no manifest.json: the shards stage has not finished there")
    dtype = np.dtype(manifest.dtype)
    arrays = []
    for shard in manifest.shards if split == "train" else manifest.validation.shards:
        path = directory / shard.file
        expected = shard.tokens * dtype.itemsize
        actual = path.stat().st_size if path.exists() else -1
        if actual != expected:
            raise ValueError(
                f"shard {path} is {actual} bytes but the manifest says {expected}: it is truncated or replaced"
            )
        arrays.append(_opened_shard(path, shard, dtype, manifest.vocab_size, verify_checksums))
    return ShardSet(directory, manifest, arrays)
