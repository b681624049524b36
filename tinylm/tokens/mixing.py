"""Which encoded documents go to the shards, how often, and in what order, streamed.

Every document carries a seeded unit in [0, 1) (see `sampling.document_unit`). Those
below `validation_fraction` form the validation split; the rest are training documents,
and their unit, rescaled to [0, 1), picks the fractional copy of a source whose weight
is not a whole number. Sources are interleaved in a uniformly random order of their
remaining documents, drawn a chunk at a time, and a bounded buffer shuffles documents
further, so the mixture is even along the whole stream and no step holds the corpus
(or even its list of documents) in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

from tinylm.storage.documents import read_batches
from tinylm.tokens.encoding import EncodedPart

T = TypeVar("T")
# A document's place in the encoded parts: (source, part index, first id, number of ids).
DocumentRef = tuple[str, int, int, int]
_INTERLEAVE_CHUNK = 1 << 16
_DRAWS = 4096


def passes(weight: float) -> list[float]:
    """One threshold per pass over a source: a whole copy takes every training document (1.0),
    a fractional copy those whose rescaled unit is below the fraction."""
    whole, fraction = divmod(weight, 1.0)
    return [1.0] * int(whole) + ([fraction] if fraction > 0 else [])


@dataclass(frozen=True)
class DocumentBatch:
    part: int
    starts: np.ndarray
    lengths: np.ndarray
    units: np.ndarray
    sources: list[str]
    codes: np.ndarray

    def select(self, mask: np.ndarray, code: int) -> Iterator[DocumentRef]:
        source = self.sources[code]
        for start, length in zip(self.starts[mask].tolist(), self.lengths[mask].tolist()):
            yield source, self.part, start, length


def document_batches(parts: Sequence[EncodedPart]) -> Iterator[DocumentBatch]:
    """The per-document tables of the parts, in corpus order, with each document's offset into its part's ids."""
    for index, part in enumerate(parts):
        offset = 0
        for batch in read_batches(part.documents, 1 << 16):
            lengths = batch.column("tokens").to_numpy()
            ends = offset + np.cumsum(lengths)
            sources = batch.column("source").dictionary_encode()
            yield DocumentBatch(
                index,
                ends - lengths,
                lengths,
                batch.column("unit").to_numpy(),
                sources.dictionary.to_pylist(),
                sources.indices.to_numpy(),
            )
            offset = int(ends[-1]) if len(ends) else offset


@dataclass(frozen=True)
class Split:
    """The validation split and the training passes of each source."""

    validation_fraction: float
    weights: Mapping[str, float]

    def position(self, units: np.ndarray) -> np.ndarray:
        """Training documents' units rescaled to [0, 1); validation documents come out negative."""
        return (units - self.validation_fraction) / (1 - self.validation_fraction)

    def thresholds(self, source: str) -> list[float]:
        return passes(self.weights.get(source, 1.0))


@dataclass
class SourceCounts:
    """Documents of each source in the training stream (copies included) and in the validation split."""

    training: Counter[str] = field(default_factory=Counter)
    validation: Counter[str] = field(default_factory=Counter)
    documents: Counter[str] = field(default_factory=Counter)

    def total(self, which: Literal["training", "validation", "documents"]) -> int:
        return sum(getattr(self, which).values())


def count_documents(parts: Sequence[EncodedPart], split: Split) -> SourceCounts:
    counts = SourceCounts()
    for batch in document_batches(parts):
        positions = split.position(batch.units)
        for code, source in enumerate(batch.sources):
            mine = batch.codes == code
            counts.documents[source] += int(mine.sum())
            counts.validation[source] += int((mine & (positions < 0)).sum())
            training = positions[mine & (positions >= 0)]
            counts.training[source] += sum(int((training < threshold).sum()) for threshold in split.thresholds(source))
    return counts


def source_stream(parts: Sequence[EncodedPart], source: str, split: Split) -> Iterator[DocumentRef]:
    """A source's training documents, pass after pass, each pass in corpus order."""
    for threshold in split.thresholds(source):
        for batch in document_batches(parts):
            if source in batch.sources:
                positions = split.position(batch.units)
                code = batch.sources.index(source)
                yield from batch.select((batch.codes == code) & (positions >= 0) & (positions < threshold), code)


def validation_stream(parts: Sequence[EncodedPart], split: Split) -> Iterator[DocumentRef]:
    """Every validation document, whatever the weights, in corpus order."""
    for batch in document_batches(parts):
        held_out = split.position(batch.units) < 0
        for code in range(len(batch.sources)):
            yield from batch.select(held_out & (batch.codes == code), code)


def interleave(counts: Sequence[int], rng: np.random.Generator) -> Iterator[int]:
    """Indices into `counts`, each i appearing counts[i] times, in a uniformly random order.

    Drawn a chunk at a time: a multivariate hypergeometric draw says how many of each
    the next chunk holds, then the chunk is shuffled, which is the same distribution as
    drawing the whole order at once in memory proportional to one chunk.
    """
    remaining = np.asarray(counts, dtype=np.int64)
    while (total := int(remaining.sum())) > 0:
        taken = rng.multivariate_hypergeometric(remaining, min(_INTERLEAVE_CHUNK, total))
        labels = np.repeat(np.arange(len(remaining)), taken)
        rng.shuffle(labels)
        remaining -= taken
        yield from labels.tolist()


def shuffle_buffered(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Items in a shuffled order, with at most `size` of them held at a time."""
    buffer: list[T] = []
    draws: Iterator[int] = iter(())
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        slot = next(draws, None)
        if slot is None:
            draws = iter(rng.integers(0, size, _DRAWS).tolist())
            slot = next(draws)
        yield buffer[slot]
        buffer[slot] = item
    for slot in rng.permutation(len(buffer)).tolist():
        yield buffer[slot]


def training_stream(
    parts: Sequence[EncodedPart], split: Split, counts: SourceCounts, shuffle_buffer: int, seed: int
) -> Iterator[DocumentRef]:
    """All training documents, copies included, sources interleaved and shuffled within the buffer."""
    sources = sorted(counts.training)
    streams = [source_stream(parts, source, split) for source in sources]
    interleaved = (
        next(streams[index])
        for index in interleave([counts.training[s] for s in sources], np.random.default_rng([seed, 0]))
    )
    return shuffle_buffered(interleaved, shuffle_buffer, np.random.default_rng([seed, 1]))
