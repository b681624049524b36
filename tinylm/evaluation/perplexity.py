"""Perplexity of a model on held-out text, per source and language, so that two models are compared on the same bytes.

The data is a corpus directory (each document's `source` and `lang`), a shard directory
(its validation split, one group: the shards interleave their sources) or raw files any
corpus reader takes (the source is the reader's, the language detected). Each group's
documents become one token stream, end-of-text before each document as in the shards,
cut into windows of `seq_len + 1` tokens that overlap by one, so every token after the
first is predicted exactly once, up to `max_tokens` per group.

Perplexity per token depends on the tokenizer; bits per byte (the summed log-loss over the
UTF-8 bytes the scored tokens stand for) does not, and compares models with different
vocabularies. This is a hand-written loop rather than lm-evaluation-harness's
`wikitext`-style tasks because those take one document list per task and score rolling
windows one request at a time: per-source groups from a corpus directory, shard sets and
batched windows are what a pretraining corpus needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from tinylm.config import EvalConfig, ExtractConfig
from tinylm.corpus.convert import convert_texts, make_converter
from tinylm.corpus.language import detect_languages
from tinylm.corpus.readers import read_documents
from tinylm.inference.generate import LoadedModel
from tinylm.stats import Stats
from tinylm.storage.documents import corpus_parts, iter_document_batches
from tinylm.storage.manifest import content_hashes, fingerprint, manifest_hash, read_manifest
from tinylm.tokens.shard_files import open_shards
from tinylm.tokens.tokenizer_files import EOS
from tinylm.training.trainer import autocast_for

EVERYTHING = "all"
SHARDS_GROUP = "validation"
DOCUMENTS_PER_BATCH = 256
SHARD_PIECE = 1 << 16  # tokens read from a memory-mapped shard at a time


@dataclass
class GroupScore:
    """One group's running totals: tokens predicted, their summed negative log-likelihood, the bytes they stand for."""

    tokens: int = 0
    nll: float = 0.0
    bytes: int = 0

    def add(self, other: GroupScore) -> None:
        self.tokens, self.nll, self.bytes = self.tokens + other.tokens, self.nll + other.nll, self.bytes + other.bytes

    def result(self) -> dict[str, float]:
        loss = self.nll / max(self.tokens, 1)
        return {
            "tokens": self.tokens,
            "bytes": self.bytes,
            "loss": loss,
            "perplexity": math.exp(min(loss, 80.0)),
            "bits_per_byte": self.nll / math.log(2) / max(self.bytes, 1),
        }


def not_data(path: Path) -> ValueError:
    return ValueError(
        f"{path} is neither a finished corpus nor a shard directory: run `tinylm corpus` on it, or give its files"
    )


def data_fingerprint(data: str | Path) -> str:
    """What identifies the scored bytes: a finished stage's manifest hash, or the file's sha256."""
    path = Path(data)
    if path.is_dir():
        if read_manifest(path) is None:
            raise not_data(path)
        return manifest_hash(path)
    return fingerprint("eval-data", {}, content_hashes([str(path)]))


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for. In a byte-level BPE each character of a token's string is one
    byte (GPT-2's byte-to-unicode map), and special tokens stand for no text, so no decoding is needed."""
    special = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for token, token_id in tokenizer.get_vocab().items():
        lengths[token_id] = 0 if token in special else len(token)
    return lengths


class Windows:
    """A group's token stream cut into windows of `seq_len + 1` tokens that overlap by one, until its budget is
    spent."""

    def __init__(self, seq_len: int, budget: int) -> None:
        self.seq_len, self.budget = seq_len, budget
        self.buffer = np.zeros(0, dtype=np.int64)
        self.taken = 0

    @property
    def full(self) -> bool:
        return self.taken >= self.budget

    def feed(self, ids: np.ndarray) -> Iterator[np.ndarray]:
        self.buffer = np.concatenate([self.buffer, ids])
        while len(self.buffer) > self.seq_len and not self.full:
            size = min(self.seq_len, self.budget - self.taken)
            yield self.buffer[: size + 1]
            self.buffer, self.taken = self.buffer[size:], self.taken + size

    def tail(self) -> Iterator[np.ndarray]:
        """What is left at the end, scored as one shorter window, so small data still counts."""
        if len(self.buffer) > 1 and not self.full:
            size = min(len(self.buffer) - 1, self.budget - self.taken)
            self.taken += size
            yield self.buffer[: size + 1]


class Scorer:
    """Scores windows in batches of equal length on the model's device and adds each window's loss to its group."""

    def __init__(self, loaded: LoadedModel, batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size, self.device = loaded.model.to(device).eval(), batch_size, device
        self.byte_lengths = token_byte_lengths(loaded.tokenizer)
        self.groups: dict[str, GroupScore] = {}
        self.pending: list[tuple[str, np.ndarray]] = []

    def add(self, group: str, window: np.ndarray) -> None:
        if self.pending and len(self.pending[0][1]) != len(window):
            self.flush()
        self.pending.append((group, window))
        if len(self.pending) == self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        windows = torch.from_numpy(np.stack([window for _, window in self.pending])).to(self.device)
        with torch.no_grad(), autocast_for(self.device):
            logits = self.model(windows[:, :-1]).logits
        losses = F.cross_entropy(logits.float().transpose(1, 2), windows[:, 1:], reduction="none").sum(dim=1).tolist()
        for (group, window), loss in zip(self.pending, losses):
            score = self.groups.setdefault(group, GroupScore())
            score.add(GroupScore(len(window) - 1, loss, int(self.byte_lengths[window[1:]].sum())))
        self.pending = []


def perplexity(
    loaded: LoadedModel, data: str | Path, config: EvalConfig, device: torch.device
) -> dict[str, dict[str, float]]:
    """Scores per group (`source/lang`, or `validation` for shards), and over all of them (`all`)."""
    max_seq_len = loaded.model.config.max_seq_len
    seq_len = min(config.seq_len or max_seq_len, max_seq_len)
    scorer = Scorer(loaded, config.batch_size, device)
    streams: dict[str, Windows] = {}
    simplified = Stats("simplified_documents")
    for group, ids in _token_streams(
        loaded, Path(data), config, lambda name: streams.get(name) is not None and streams[name].full, simplified
    ):
        windows = streams.setdefault(group, Windows(seq_len, config.max_tokens))
        for window in windows.feed(ids):
            scorer.add(group, window)
    scorer.flush()
    for group, windows in streams.items():
        for window in windows.tail():
            scorer.add(group, window)
    scorer.flush()
    if not scorer.groups:
        raise ValueError(
            f"{data} holds no text to score: give a corpus, a shard directory with a validation split, or text files"
        )
    total = GroupScore()
    for score in scorer.groups.values():
        total.add(score)
    everything = total.result() | {"simplified_documents": simplified["simplified_documents"]}
    return {group: score.result() for group, score in sorted(scorer.groups.items())} | {EVERYTHING: everything}


def _token_streams(
    loaded: LoadedModel, path: Path, config: EvalConfig, done: Callable[[str], bool], stats: Stats
) -> Iterator[tuple[str, np.ndarray]]:
    """(group, token ids) pieces in data order; a group `done(group)` says is full is no longer encoded."""
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None and manifest.stage == "shards":
        yield from _shard_stream(loaded, path, done)
        return
    eos = loaded.tokenizer.token_to_id(EOS)
    for groups, texts in _document_batches(path, config, stats):
        wanted = [index for index, group in enumerate(groups) if not done(group)]
        encoded = loaded.tokenizer.encode_batch_fast([texts[index] for index in wanted], add_special_tokens=False)
        for index, encoding in zip(wanted, encoded):
            yield groups[index], np.asarray([eos, *encoding.ids], dtype=np.int64)


def _document_batches(path: Path, config: EvalConfig, stats: Stats) -> Iterator[tuple[list[str], list[str]]]:
    """(`source/lang` groups, texts) of a corpus directory's documents (simplified by the corpus stage already), or of
    a raw file's, its Chinese simplified as that stage would (counted as `simplified_documents`)."""
    if path.is_dir():
        if read_manifest(path) is None or not corpus_parts(path):
            raise not_data(path)
        for batch in iter_document_batches(corpus_parts(path), ["source", "lang", "text"], DOCUMENTS_PER_BATCH):
            sources, langs, texts = (batch.column(name).to_pylist() for name in ("source", "lang", "text"))
            yield [f"{source}/{lang or 'und'}" for source, lang in zip(sources, langs)], texts
        return
    documents = read_documents(path, ExtractConfig(), Stats())
    convert = make_converter(config.convert) if config.simplify else None
    threshold, identify = config.convert.cjk_threshold, config.convert.language_id
    while batch := [document for _, document in zip(range(DOCUMENTS_PER_BATCH), documents)]:
        texts, langs = [document["text"] for document in batch], [document["lang"] for document in batch]
        if convert is not None:
            texts, langs, conversions = convert_texts(texts, langs, convert, threshold, None, identify)
            stats.update("simplified_documents", sum(conversion is not None for conversion in conversions))
        else:
            langs = [lang or detected for lang, detected in zip(langs, detect_languages(texts, threshold, identify))]
        yield [f"{document['source']}/{lang}" for document, lang in zip(batch, langs)], texts


def _shard_stream(loaded: LoadedModel, path: Path, done: Callable[[str], bool]) -> Iterator[tuple[str, np.ndarray]]:
    """A shard set's validation split, refused when it was tokenized with another tokenizer than the model's."""
    shards = open_shards(path, "validation")
    if shards.manifest.tokenizer_sha256 != loaded.tokenizer_sha256:
        raise ValueError(
            f"{path} was tokenized with another tokenizer than the model's: score its corpus directory instead"
        )
    if not shards.arrays:
        raise ValueError(
            f"{path} has no validation split (shards.validation_fraction was 0): score its corpus directory instead"
        )
    for array in shards.arrays:
        for start in range(0, len(array), SHARD_PIECE):
            if done(SHARDS_GROUP):
                return
            yield SHARDS_GROUP, np.asarray(array[start : start + SHARD_PIECE], dtype=np.int64)
