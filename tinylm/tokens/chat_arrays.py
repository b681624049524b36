"""Chat data on disk: token ids, loss mask and offsets as flat arrays that training memory-maps.

One part per input file, a directory written atomically:

    ids.bin      every sequence's token ids end to end (uint16, or uint32 past 65536 ids)
    mask.bin     uint8 per token: 1 where the model learns it (the assistant's replies)
    offsets.bin  int64, sequences + 1 boundaries into ids and mask
    lines.bin    int64 per unit: the input line it came from
    split.bin    uint8 per unit: 1 = validation

A unit is one conversation (SFT), or a preference pair (DPO: sequences 2u and 2u + 1
are its chosen and rejected sides). Beside the parts, `order.bin` lists the training
units of all parts in the mixed, shuffled order training reads them (each as
`part_start + row`), and `validation.bin` the validation units.

Why not parquet, which this stage wrote before: a list column read back becomes Python
lists, some 30 bytes per token, so MiniMind's 1.2 GB `sft_mini_512.jsonl` needed well over
10 GB of RAM to train on. Memory maps cost what the page cache lends, flat in the set's size.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tinylm.storage.atomic import atomic_path
from tinylm.storage.manifest import TokenizedManifest
from tinylm.tokens.mixing import passes

IDS, MASK, OFFSETS, LINES, SPLIT = "ids.bin", "mask.bin", "offsets.bin", "lines.bin", "split.bin"
ORDER_FILE, VALIDATION_FILE = "order.bin", "validation.bin"
SEQUENCES_PER_UNIT = {"sft": 1, "dpo": 2}
_FLUSH_TOKENS = 1 << 20


def part_dir(index: int) -> str:
    return f"part-{index:05d}"


def is_validation(name: str, line: int, seed: int, fraction: float) -> bool:
    """A record's split, from a hash of its file name and line: stable whatever else the run holds."""
    digest = hashlib.blake2b(f"{seed}\x1f{name}\x1f{line}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


class ChatPartWriter:
    """Appends units to a part's files, holding at most about a million tokens in memory."""

    def __init__(self, directory: Path, dtype: np.dtype) -> None:
        self.directory, self.dtype = directory, dtype
        self._files: dict[str, BinaryIO] = {}
        self._ids: list[list[int]] = []
        self._masks: list[list[int]] = []
        self._units: list[tuple[int, int]] = []
        self._pending = 0
        self.tokens = 0

    def __enter__(self) -> ChatPartWriter:
        self.directory.mkdir(parents=True)
        self._files = {name: open(self.directory / name, "wb") for name in (IDS, MASK, OFFSETS, LINES, SPLIT)}  # noqa: SIM115
        np.zeros(1, dtype="<i8").tofile(self._files[OFFSETS])
        return self

    def add(self, sequences: Sequence[tuple[list[int], list[int]]], line: int, validation: bool) -> None:
        for ids, mask in sequences:
            self._ids.append(ids)
            self._masks.append(mask)
            self._pending += len(ids)
        self._units.append((line, int(validation)))
        if self._pending >= _FLUSH_TOKENS:
            self._flush()

    def _flush(self) -> None:
        if not self._units:
            return
        lengths = np.fromiter((len(ids) for ids in self._ids), dtype="<i8", count=len(self._ids))
        total = int(lengths.sum())
        np.fromiter(itertools.chain.from_iterable(self._ids), dtype=self.dtype, count=total).tofile(self._files[IDS])
        np.fromiter(itertools.chain.from_iterable(self._masks), dtype="u1", count=total).tofile(self._files[MASK])
        (self.tokens + np.cumsum(lengths)).astype("<i8").tofile(self._files[OFFSETS])
        units = np.asarray(self._units, dtype="<i8")
        units[:, 0].tofile(self._files[LINES])
        units[:, 1].astype("u1").tofile(self._files[SPLIT])
        self.tokens += total
        self._ids, self._masks, self._units, self._pending = [], [], [], 0

    def __exit__(self, *exc: object) -> None:
        self._flush()
        for handle in self._files.values():
            handle.close()


@dataclass
class ChatPart:
    """A part's arrays, memory-mapped: nothing is read until a batch asks for its rows."""

    ids: np.ndarray
    mask: np.ndarray
    offsets: np.ndarray
    split: np.ndarray
    sequences_per_unit: int

    @classmethod
    def open(cls, directory: Path, dtype: np.dtype, sequences_per_unit: int) -> ChatPart:
        def array(name: str, kind: str | np.dtype) -> np.ndarray:
            path = directory / name
            if path.stat().st_size == 0:
                return np.zeros(0, dtype=kind)
            return np.memmap(path, dtype=kind, mode="r")

        return cls(array(IDS, dtype), array(MASK, "u1"), array(OFFSETS, "<i8"), array(SPLIT, "u1"), sequences_per_unit)

    @property
    def units(self) -> int:
        return len(self.split)

    def sequence(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end], self.mask[start:end]

    def unit(self, row: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The unit's sequences: one conversation, or a pair's chosen and rejected sides."""
        first = row * self.sequences_per_unit
        return [self.sequence(first + side) for side in range(self.sequences_per_unit)]


def mixed_order(
    splits: Sequence[np.ndarray], names: Sequence[str], weights: Mapping[str, float], seed: int
) -> np.ndarray:
    """The training units of all parts, each file taken `weights[name]` times (default once), shuffled
    together by `seed`: files are mixed into one stream, not trained one after another (where the
    last file's style wins). Units are numbered across parts, `part_start + row`."""
    starts = np.concatenate([[0], np.cumsum([len(split) for split in splits])])
    chosen = []
    for index, (split, name) in enumerate(zip(splits, names)):
        train = np.flatnonzero(np.asarray(split) == 0) + starts[index]
        draws = np.random.default_rng([seed, index]).random(len(train))
        chosen += [train[draws < threshold] for threshold in passes(weights.get(name, 1.0))]
    order = np.concatenate(chosen) if chosen else np.zeros(0, dtype="<i8")
    return np.random.default_rng(seed).permutation(order).astype("<i8")


def validation_units(splits: Sequence[np.ndarray]) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum([len(split) for split in splits])])
    return np.concatenate(
        [np.flatnonzero(np.asarray(split) == 1) + start for split, start in zip(splits, starts)]
    ).astype("<i8")


def write_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        array.tofile(tmp)


def read_units(path: Path) -> np.ndarray:
    return np.memmap(path, dtype="<i8", mode="r") if path.stat().st_size else np.zeros(0, dtype="<i8")


class ChatDataManifest(TokenizedManifest):
    """The chat-data stage's manifest: the format (sft or dpo), which turns the loss is on, the token dtype, the
    sequences each unit holds (1, a pair's 2), the parts' files and row counts, and the counts of what was skipped.
    A manifest without `sequences_per_unit` is of the parquet layout of an older tinylm (training refuses it)."""

    format: str
    scored_turns: str = "assistant_turns"
    dtype: str = "<u2"
    sequences_per_unit: int | None = None
    train_units: int = 0
    pad_id: int | None = None
    parts: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    config: dict[str, Any] = {}

    @property
    def shard_units(self) -> int:
        """Units per training shard: the stage's `shard_units` setting."""
        return int(self.config["shard_units"])
