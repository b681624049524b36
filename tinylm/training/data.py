"""What the training loop reads: token shards for pretraining, chat data for SFT and DPO, behind one interface.

Both are a list of "shards" (token shard files, or slices of the chat data's mixed
order), each cut into units (windows of `seq_len + 1` tokens, conversations, or
preference pairs) visited in an order fixed by the seed and the shard's index. A batch
is inputs, targets and, for chat data, the loss weight of each target position; a DPO
batch holds its pairs' chosen sides first, then their rejected sides, in the same order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.config import TrainConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.chat_arrays import ORDER_FILE, VALIDATION_FILE, ChatDataManifest, ChatPart, read_units
from tinylm.tokens.prompts import PromptsManifest, read_prompts
from tinylm.tokens.shard_files import ShardSet, ShardsManifest, open_shards
from tinylm.tokens.tokenizer_files import THINK_TOKENS, load_tokenizer


@dataclass
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None
    units: np.ndarray | None = None

    def to(self, device: torch.device) -> Batch:
        weights = None if self.weights is None else self.weights.to(device, non_blocking=True)
        return Batch(
            self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True), weights, self.units
        )

    def pinned(self) -> Batch:
        """In page-locked memory, so that `to(cuda)` copies asynchronously while the GPU computes."""
        weights = None if self.weights is None else self.weights.pin_memory()
        return Batch(self.inputs.pin_memory(), self.targets.pin_memory(), weights, self.units)


_DONE = object()


def prefetch(
    produce: Callable[[int], list[Batch]], steps: Iterable[int], pin: bool, depth: int = 2
) -> Iterator[list[Batch]]:
    """`produce(step)` for each step in order, computed up to `depth` steps ahead on a background thread (and pinned
    for a GPU): cutting batches from the memory maps overlaps the device's work instead of idling it between steps.
    The steps and their order are the caller's, so a resumed run reads exactly what an uninterrupted one would;
    an error in `produce` is raised here, at the step it belongs to."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for step in steps:
                batches = produce(step)
                if not hand_over([batch.pinned() for batch in batches] if pin else batches):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(error)
            return
        hand_over(_DONE)

    worker = threading.Thread(target=work, name="tinylm-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def unit_order(units: int, config: TrainConfig, shard_index: int) -> np.ndarray:
    return np.random.default_rng([config.seed, shard_index]).permutation(units)


def windows_batch(array: np.ndarray, order: np.ndarray, batch: int, config: TrainConfig) -> Batch:
    """Micro-batch number `batch` of windows: inputs and the same windows shifted by one."""
    starts = order[batch * config.batch_size : (batch + 1) * config.batch_size] * config.seq_len
    windows = torch.from_numpy(
        np.stack([array[start : start + config.seq_len + 1] for start in starts]).astype(np.int64)
    )
    return Batch(windows[:, :-1], windows[:, 1:])


def _prefix(arrays: list[np.ndarray], tokens: int) -> np.ndarray:
    """The first `tokens` ids across memory-mapped shards: validation reads what it evaluates, not the whole split."""
    pieces, remaining = [], tokens
    for array in arrays:
        if remaining <= 0:
            break
        pieces.append(np.asarray(array[:remaining]))
        remaining -= len(pieces[-1])
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


@dataclass
class PretrainData:
    directory: Path
    shards: ShardSet
    validation: ShardSet
    config: TrainConfig
    format: str = "pretrain"

    @property
    def manifest(self) -> ShardsManifest:
        return self.shards.manifest

    def shard_count(self) -> int:
        return len(self.shards.arrays)

    def units(self, shard: int) -> int:
        return (len(self.shards.arrays[shard]) - 1) // self.config.seq_len

    def batch(self, shard: int, order: np.ndarray, index: int) -> Batch:
        return windows_batch(self.shards.arrays[shard], order, index, self.config)

    def validation_batches(self) -> list[Batch]:
        """The first `eval_batches` windows of the validation shards: the same ones after every shard."""
        config = self.config
        stream = _prefix(self.validation.arrays, config.eval_batches * config.batch_size * config.seq_len + 1)
        order = np.arange(max(len(stream) - 1, 0) // config.seq_len)
        return [
            windows_batch(stream, order, batch, config)
            for batch in range(min(config.eval_batches, -(-len(order) // config.batch_size)))
        ]


@dataclass
class ChatData:
    """Conversations or preference pairs, padded or cut to `seq_len + 1` tokens; padding never counts in the loss.

    Memory-mapped (see `tokens/chat_arrays.py`): a batch reads its rows and nothing else.
    The mixed order is cut into shards of the data's `shard_units`.
    """

    directory: Path
    manifest: ChatDataManifest
    config: TrainConfig
    parts: list[ChatPart]
    order: np.ndarray
    validation: np.ndarray
    weighted_ids: np.ndarray
    part_starts: np.ndarray

    @classmethod
    def open(cls, directory: Path, manifest: ChatDataManifest, config: TrainConfig) -> ChatData:
        dtype = np.dtype(manifest.dtype)
        parts = [ChatPart.open(directory / part["file"], dtype, manifest.sequences_per_unit) for part in manifest.parts]
        tokenizer = load_tokenizer(manifest.tokenizer_dir)
        weighted = [tokenizer.token_to_id(token) for token in THINK_TOKENS] if config.think_token_weight != 1 else []
        weighted_ids = np.asarray([token for token in weighted if token is not None], dtype=np.int64)
        order, validation = read_units(directory / ORDER_FILE), read_units(directory / VALIDATION_FILE)
        part_starts = np.cumsum([0] + [part.units for part in parts])
        return cls(directory, manifest, config, parts, order, validation, weighted_ids, part_starts)

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def shard_units(self) -> int:
        return self.manifest.shard_units

    def shard_count(self) -> int:
        return -(-len(self.order) // self.shard_units)

    def units(self, shard: int) -> int:
        return len(self.order[shard * self.shard_units : (shard + 1) * self.shard_units])

    def batch(self, shard: int, order: np.ndarray, index: int) -> Batch:
        rows = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        return self.units_batch(np.asarray(self.order[shard * self.shard_units + rows]))

    def units_batch(self, units: np.ndarray) -> Batch:
        """The sequences of these units (numbered across parts); a pair's sides go to the two halves of the batch."""
        starts = self.part_starts
        located = [
            (int(part), int(unit - starts[part]))
            for unit, part in zip(units, np.searchsorted(starts, units, side="right") - 1)
        ]
        per_unit = [self.parts[part].unit(row) for part, row in located]
        sequences = [unit[side] for side in range(self.manifest.sequences_per_unit) for unit in per_unit]
        width = self.config.seq_len + 1
        tokens = np.full((len(sequences), width), self.manifest.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.float32)
        for line, (ids, trained) in enumerate(sequences):
            length = min(len(ids), width)
            tokens[line, :length] = ids[:length]
            mask[line, :length] = trained[:length]
        if len(self.weighted_ids):
            mask[np.isin(tokens, self.weighted_ids) & (mask > 0)] = self.config.think_token_weight
        tokens_t, mask_t = torch.from_numpy(tokens), torch.from_numpy(mask)
        return Batch(tokens_t[:, :-1], tokens_t[:, 1:], mask_t[:, 1:], np.asarray(units))

    def validation_batches(self) -> list[Batch]:
        """The first `eval_batches` batches of validation units, the last one possibly smaller: the same ones after
        every shard."""
        size = self.config.batch_size
        units = np.asarray(self.validation[: size * self.config.eval_batches])
        return [self.units_batch(units[start : start + size]) for start in range(0, len(units), size)]


@dataclass
class PromptData:
    """GRPO's prompts (see `tokens/prompts.py`), one shard of them: a batch is its prompts' ids, left-padded, and
    their numbers (`units`), by which the rollout finds their fields. There are no targets: the rollout makes
    them."""

    directory: Path
    manifest: PromptsManifest
    config: TrainConfig
    records: list[dict]
    format: str = "prompts"

    @classmethod
    def open(cls, directory: Path, manifest: PromptsManifest, config: TrainConfig) -> PromptData:
        return cls(directory, manifest, config, read_prompts(directory))

    def shard_count(self) -> int:
        return 1

    def units(self, shard: int) -> int:
        return len(self.records)

    def batch(self, shard: int, order: np.ndarray, index: int) -> Batch:
        units = np.asarray(order[index * self.config.batch_size : (index + 1) * self.config.batch_size])
        prompts = [self.records[unit]["ids"] for unit in units]
        longest = max(len(ids) for ids in prompts)
        inputs = torch.full((len(prompts), longest), self.manifest.pad_id, dtype=torch.long)
        for row, ids in enumerate(prompts):
            inputs[row, longest - len(ids) :] = torch.as_tensor(ids)
        return Batch(inputs, torch.zeros((len(prompts), 0), dtype=torch.long), None, units)

    def validation_batches(self) -> list[Batch]:
        return []


TrainingData = PretrainData | ChatData | PromptData


def open_training_data(directory: str | Path, config: TrainConfig) -> TrainingData:
    """Token shards (the shards stage's output), chat data (the chat-data stage's) or GRPO's prompts, by their
    manifest."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory} has no manifest.json: neither finished shards nor chat data")
    if manifest.stage == "prompts":
        return PromptData.open(Path(directory), read_manifest(directory, PromptsManifest), config)
    if manifest.stage == "chat_data":
        chat = read_manifest(directory, ChatDataManifest)
        if chat.sequences_per_unit is None:
            raise ValueError(
                f"{directory} holds chat data in the parquet layout of an older tinylm: run chat-data again"
            )
        return ChatData.open(Path(directory), chat, config)
    train, validation = (open_shards(directory, split, config.verify_shards) for split in ("train", "validation"))
    return PretrainData(Path(directory), train, validation, config)
