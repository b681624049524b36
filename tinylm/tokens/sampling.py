"""Deterministic, language-balanced samples of a corpus, streamed.

Every document gets a uniform number in [0, 1) from a hash of its id and a seed, so a
sample is a range of those numbers: the same for the same corpus and seed, independent
of the order of files, and decided one document at a time without holding the corpus.
The top `heldout_fraction` of the range is never sampled, which keeps held-out text for
measuring a tokenizer (or validating a model) apart from what it was trained on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tinylm.storage.documents import iter_document_batches

OTHER = "other"


def document_unit(doc_id: str, seed: int) -> float:
    """A uniform number in [0, 1) for a document: its place in every seeded sample."""
    digest = hashlib.blake2b(f"{seed}\x1f{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def language_of(lang: str | None) -> str:
    return lang or OTHER


# Resolution of the per-language histograms of bytes over document units.
_BINS = 4096


@dataclass(frozen=True)
class Survey:
    """One pass over a corpus: per language, the sampleable bytes binned by document unit, and held-out texts."""

    histograms: dict[str, np.ndarray]
    heldout: dict[str, list[str]]

    @property
    def available(self) -> dict[str, int]:
        return {lang: int(histogram.sum()) for lang, histogram in self.histograms.items()}


def survey(parts: Sequence[Path], seed: int, heldout_fraction: float, heldout_bytes: int) -> Survey:
    """Bin sampleable UTF-8 bytes by document unit per language; keep up to `heldout_bytes` of held-out text per
    language."""
    histograms: dict[str, np.ndarray] = {}
    heldout: dict[str, list[str]] = {}
    heldout_sizes: Counter[str] = Counter()
    for batch in iter_document_batches(parts, ["id", "lang", "text"]):
        sizes = pc.binary_length(batch.column("text").cast(pa.binary())).to_pylist()
        for row, (doc_id, lang, size) in enumerate(zip(*_columns(batch), sizes)):
            lang = language_of(lang)
            unit = document_unit(doc_id, seed)
            if unit < 1 - heldout_fraction:
                histograms.setdefault(lang, np.zeros(_BINS, dtype=np.int64))[int(unit * _BINS)] += size
            elif heldout_sizes[lang] < heldout_bytes:
                heldout_sizes[lang] += size
                heldout.setdefault(lang, []).append(batch.column("text")[row].as_py())
    return Survey(dict(sorted(histograms.items())), heldout)


def _columns(batch: pa.RecordBatch) -> tuple[list, list]:
    return batch.column("id").to_pylist(), batch.column("lang").to_pylist()


def language_targets(available: Mapping[str, int], budget: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Bytes to sample per language: the budget split by weight (1 for a language not named),
    and what a language lacks passed on to the others, so the budget is used when it can be."""
    targets = {lang: 0 for lang in available}
    open_languages = {lang for lang, size in available.items() if size > 0 and weights.get(lang, 1.0) > 0}
    remaining = budget
    while open_languages and remaining > 0:
        total_weight = sum(weights.get(lang, 1.0) for lang in open_languages)
        shares = {lang: remaining * weights.get(lang, 1.0) / total_weight for lang in open_languages}
        short = {lang for lang in open_languages if available[lang] - targets[lang] <= shares[lang]}
        if not short:
            for lang in open_languages:
                targets[lang] += int(shares[lang])
            break
        for lang in short:
            remaining -= available[lang] - targets[lang]
            targets[lang] = available[lang]
        open_languages -= short
    return targets


@dataclass(frozen=True)
class SamplePlan:
    """Which documents a sample takes: per language, those whose unit is below `rates[lang]`, up to `targets[lang]`
    bytes.

    The rate is where the language's bytes, in unit order, reach its target: the sample is
    the documents with the lowest units, so it comes within a document of the target
    even when a few long documents hold most of a language's text.
    """

    seed: int
    targets: dict[str, int]
    rates: dict[str, float]

    @classmethod
    def balanced(
        cls, surveyed: Survey, budget: int, weights: Mapping[str, float], seed: int, heldout_fraction: float
    ) -> SamplePlan:
        targets = language_targets(surveyed.available, budget, weights)
        rates = {}
        for lang, histogram in surveyed.histograms.items():
            reached = np.flatnonzero(np.cumsum(histogram) >= targets[lang]) if targets[lang] else np.array([-1])
            rates[lang] = min((int(reached[0]) + 1) / _BINS if len(reached) else 1.0, 1 - heldout_fraction)
        return cls(seed, targets, rates)


def sample_texts(parts: Sequence[Path], plan: SamplePlan, taken: Counter[str]) -> Iterator[str]:
    """The texts of the sample in corpus order; `taken` counts bytes and documents per language as they go."""
    for batch in iter_document_batches(parts, ["id", "lang", "text"]):
        for doc_id, lang, text in zip(*_columns(batch), batch.column("text").to_pylist()):
            lang = language_of(lang)
            if document_unit(doc_id, plan.seed) >= plan.rates.get(lang, 0.0):
                continue
            size = len(text.encode("utf-8"))
            if taken[f"{lang}.bytes"] + size > plan.targets[lang]:
                continue
            taken[f"{lang}.bytes"] += size
            taken[f"{lang}.documents"] += 1
            yield text
