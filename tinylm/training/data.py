"""What the training loop reads: token shards for pretraining, chat parquet for SFT, behind one interface.

Both are a list of "shards" (token shard files, or chat-data parquet parts), each cut
into units (windows of `seq_len + 1` tokens, or conversations) visited in an order fixed
by the seed and the shard's index; a batch is inputs, targets and, for SFT, the mask of
target positions that count in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from tinylm.config import TrainConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardSet, open_shards

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def unit_order(units: int, config: TrainConfig, shard_index: int) -> np.ndarray:
    return np.random.default_rng([config.seed, shard_index]).permutation(units)


def windows_batch(array: np.ndarray, order: np.ndarray, batch: int, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Micro-batch number `batch` of windows: inputs and the same windows shifted by one."""
    starts = order[batch * config.batch_size : (batch + 1) * config.batch_size] * config.seq_len
    windows = np.stack([array[start : start + config.seq_len + 1] for start in starts]).astype(np.int64)
    return torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])


@dataclass
class PretrainData:
    directory: Path
    shards: ShardSet
    validation: ShardSet
    config: TrainConfig

    @property
    def manifest(self) -> dict:
        return self.shards.manifest

    def shard_count(self) -> int:
        return len(self.shards.arrays)

    def units(self, shard: int) -> int:
        return (len(self.shards.arrays[shard]) - 1) // self.config.seq_len

    def batch(self, shard: int, order: np.ndarray, index: int) -> Batch:
        return (*windows_batch(self.shards.arrays[shard], order, index, self.config), None)


@dataclass
class ChatData:
    """SFT conversations, padded or cut to `seq_len + 1` tokens; padding never counts in the loss."""

    directory: Path
    manifest: dict
    config: TrainConfig
    validation: None = None
    _loaded: dict[int, tuple[list, list]] = field(default_factory=dict)

    def shard_count(self) -> int:
        return len(self.manifest["parts"])

    def units(self, shard: int) -> int:
        return self.manifest["parts"][shard]["rows"]

    def _part(self, shard: int) -> tuple[list, list]:
        if shard not in self._loaded:
            table = pq.read_table(self.directory / self.manifest["parts"][shard]["file"], columns=["input_ids", "loss_mask"])
            self._loaded = {shard: (table.column("input_ids").to_pylist(), table.column("loss_mask").to_pylist())}
        return self._loaded[shard]

    def batch(self, shard: int, order: np.ndarray, index: int) -> Batch:
        ids, masks = self._part(shard)
        rows = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        width = self.config.seq_len + 1
        tokens = np.full((len(rows), width), self.manifest["pad_id"], dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.float32)
        for line, row in enumerate(rows):
            length = min(len(ids[row]), width)
            tokens[line, :length] = ids[row][:length]
            mask[line, :length] = masks[row][:length]
        tokens_t, mask_t = torch.from_numpy(tokens), torch.from_numpy(mask)
        return tokens_t[:, :-1], tokens_t[:, 1:], mask_t[:, 1:]


def open_training_data(directory: str | Path, config: TrainConfig) -> PretrainData | ChatData:
    """Token shards (the shards stage's output) or SFT parquet (the chat-data stage's), by their manifest."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory} has no manifest.json: neither finished shards nor chat data")
    if manifest["stage"] == "chat_data":
        if manifest["format"] != "sft":
            raise ValueError(f"{directory} holds {manifest['format']} pairs; training reads SFT conversations")
        return ChatData(Path(directory), manifest, config)
    train, validation = (open_shards(directory, split, config.verify_shards) for split in ("train", "validation"))
    return PretrainData(Path(directory), train, validation, config)
