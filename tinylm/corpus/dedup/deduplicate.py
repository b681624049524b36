"""Dedup stage: exact duplicates by normalized-text hash, near duplicates by MinHash LSH.

Rules, in this order:
  * a document whose normalized text was seen before (in this run or in the index) is an
    exact duplicate; the first in corpus order is kept;
  * a document whose signature matches one in the persistent index near-duplicates an
    earlier corpus and is dropped;
  * the rest are grouped into clusters (connected components of LSH matches), and each
    cluster keeps its longest document, ties going to the smallest id.
The kept documents' keys and signatures then join the index, replacing what this corpus's earlier version put
there, so next month's corpus is deduplicated against this one and a rerun of this one is not. A run that would keep
nothing fails instead (`EmptyCorpusError`) before it writes anything: the previous output and its index entries stay.

Two passes over the sources: the first decides, the second writes. No text is held, and
what the decisions need per document (keys, signatures, lengths, ids) goes to a scratch
directory (`spill.py`), so memory stays flat whatever the corpus's size; only the
clusters' union-find holds 8 bytes per candidate document.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from tinylm.config import DedupConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.dedup.clusters import UnionFind, cluster_losers
from tinylm.corpus.dedup.index import (
    CorpusKey,
    DedupIndex,
    LocalKnownDocuments,
    PartWriter,
    as_corpus_key,
    banding,
)
from tinylm.corpus.dedup.lookup_tables import band_keys, matching_pairs, sorted_columns
from tinylm.corpus.dedup.minhash import MinHasher
from tinylm.corpus.dedup.parts import (
    BATCH,
    EXACT_DUPLICATE,
    KEPT,
    NEAR_DUPLICATE,
    NEAR_DUPLICATE_OF_INDEX,
    KeptRows,
    write_part,
)
from tinylm.corpus.dedup.redis_index import RedisKnownDocuments
from tinylm.corpus.dedup.spill import AppendedRows, AppendedStrings, SortedKeyRuns
from tinylm.stats import Stats
from tinylm.storage.documents import read_batches

KnownDocuments = LocalKnownDocuments | RedisKnownDocuments
_WHITESPACE = re.compile(r"\s+")
SCRATCH = ".dedup-scratch"
STATS = (
    "documents",
    "exact_duplicates",
    "exact_duplicates_of_index",
    "near_duplicates_of_index",
    "near_duplicates",
    "kept",
)


class EmptyCorpusError(ValueError):
    """Dedup would keep no document of a non-empty corpus; nothing was written."""


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalized: copies that differ only there collide."""
    normalized = _WHITESPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


class _Candidates:
    """What the first pass learns: which documents are exact copies or match the index, and
    how the rest cluster by their LSH matches among themselves."""

    def __init__(self, config: DedupConfig, scratch: Path) -> None:
        self.config = config
        self.hasher = MinHasher(config.num_perm, config.seed)
        self.bands = banding(config)
        self.unique_keys = AppendedRows(scratch / "unique-keys", "S16")
        self.unique_key_runs = SortedKeyRuns(scratch, "unique-keys")
        self.documents = AppendedRows(scratch / "documents", np.int64)  # each candidate's position in the corpus
        self.lengths = AppendedRows(scratch / "lengths", np.int64)
        self.exact_keys = AppendedRows(scratch / "exact-keys", "S16")
        self.ids = AppendedStrings(scratch / "ids")
        self.signatures = AppendedRows(scratch / "signatures", "<u4", config.num_perm)
        self.band_runs = SortedKeyRuns(scratch, "bands")
        self.clusters = UnionFind()
        # The documents dropped before clustering, in corpus order, and why (a verdict of parts.py).
        self.dropped = AppendedRows(scratch / "dropped", np.int64)
        self.dropped_reasons = AppendedRows(scratch / "dropped-reasons", np.int8)

    @property
    def count(self) -> int:
        return self.documents.rows

    def add_batch(self, first_document: int, documents: list[dict], known: KnownDocuments, stats: Stats) -> None:
        config = self.config
        stats.update("documents", len(documents))
        texts = [without_chat_markers(document["text"]) for document in documents]
        key_list = [exact_key(text) for text in texts]
        keys = np.array(key_list, dtype="S16")
        fresh = np.ones(len(documents), dtype=bool)
        if config.exact:
            of_index = known.seen_exact(key_list)
            fresh = ~(of_index | self._seen_in_run(keys))
            stats.update("exact_duplicates", int((~fresh).sum()))
            stats.update("exact_duplicates_of_index", int(of_index.sum()))
        fresh_rows = np.flatnonzero(fresh)
        if not config.near:
            self._drop(first_document, np.flatnonzero(~fresh), np.zeros(0, dtype=np.int64))
            self._add(first_document, fresh_rows, documents, keys, None)
            return
        signatures = self.hasher.signatures(
            [texts[row] for row in fresh_rows],
            [documents[row]["lang"] for row in fresh_rows],
            config.zh_ngram,
            config.en_ngram,
        )
        of_index = known.near(signatures)
        stats.update("near_duplicates_of_index", int(of_index.sum()))
        self._drop(first_document, np.flatnonzero(~fresh), fresh_rows[of_index])
        self._add(first_document, fresh_rows[~of_index], documents, keys, signatures[~of_index])

    def _drop(self, first_document: int, exact: np.ndarray, of_index: np.ndarray) -> None:
        rows = np.concatenate([exact, of_index])
        reasons = np.concatenate(
            [np.full(len(exact), EXACT_DUPLICATE, np.int8), np.full(len(of_index), NEAR_DUPLICATE_OF_INDEX, np.int8)]
        )
        order = np.argsort(rows, kind="stable")
        self.dropped.append(first_document + rows[order])
        self.dropped_reasons.append(reasons[order])

    def verdicts(self, start: int, stop: int, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The verdict on each document of corpus positions [start, stop), and the numbers of its kept candidates."""
        verdicts = np.full(stop - start, KEPT, dtype=np.int8)
        dropped = self.dropped.view()
        first, last = np.searchsorted(dropped, [start, stop])
        verdicts[dropped[first:last] - start] = self.dropped_reasons.view()[first:last]
        positions = self.documents.view()
        first, last = np.searchsorted(positions, [start, stop])
        numbers = np.arange(first, last)
        verdicts[positions[np.intersect1d(numbers, removed, assume_unique=True)] - start] = NEAR_DUPLICATE
        return verdicts, np.setdiff1d(numbers, removed, assume_unique=True)

    def _seen_in_run(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key occurred earlier in this run (earlier batches, or earlier in this one); records the new
        ones."""
        prefixes = keys.view(np.uint8).reshape(len(keys), 16)[:, :8].copy().view("<u8").T
        query, row = self.unique_key_runs.pairs(prefixes)
        seen = np.zeros(len(keys), dtype=bool)
        seen[query[self.unique_keys.view()[row] == keys[query]]] = True
        first_in_batch = np.zeros(len(keys), dtype=bool)
        first_in_batch[np.unique(keys, return_index=True)[1]] = True
        seen |= ~first_in_batch
        new = np.flatnonzero(~seen)
        self.unique_key_runs.add(prefixes[:, new], self.unique_keys.rows)
        self.unique_keys.append(keys[new])
        return seen

    def _add(
        self,
        first_document: int,
        rows: np.ndarray,
        documents: list[dict],
        keys: np.ndarray,
        signatures: np.ndarray | None,
    ) -> None:
        first = self.count
        self.clusters.extend(len(rows))
        if signatures is not None:
            self._cluster(first, signatures)
        self.documents.append(first_document + rows)
        self.lengths.append(np.array([len(documents[row]["text"]) for row in rows], dtype=np.int64))
        self.exact_keys.append(keys[rows])
        self.ids.append([documents[row]["id"] for row in rows])

    def _cluster(self, first: int, signatures: np.ndarray) -> None:
        """Join each new candidate with the earlier ones (this batch's included) its signature matches."""
        keys = band_keys(signatures, *self.bands)
        query, earlier = self.band_runs.pairs(keys)
        within_query, within_earlier = matching_pairs(sorted_columns(keys), keys)
        before = within_earlier < within_query
        matched = (
            (query, earlier, self.signatures.view(), 0),
            (within_query[before], within_earlier[before], signatures, first),
        )
        for new_rows, old_rows, old_signatures, old_first in matched:
            new_rows, old_rows = _unique_pairs(new_rows, old_rows)
            if self.config.verify:
                agree = (old_signatures[old_rows] == signatures[new_rows]).mean(axis=1) >= self.config.threshold
                new_rows, old_rows = new_rows[agree], old_rows[agree]
            self.clusters.union_pairs(first + new_rows, old_first + old_rows)
        self.band_runs.add(keys, first)
        self.signatures.append(signatures)

    def removed(self, stats: Stats) -> np.ndarray:
        """The candidates that lose to another in their cluster (sorted numbers)."""
        if not self.config.near or self.count == 0:
            return np.zeros(0, dtype=np.int64)
        return cluster_losers(self.clusters.roots(), lambda members: self.lengths.view()[members], self.ids.get, stats)


def _unique_pairs(query: np.ndarray, earlier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (query, earlier) pair once (a pair matching in several bands comes once per band)."""
    pairs = np.unique(np.stack([query, earlier], axis=1), axis=0) if len(query) else np.zeros((0, 2), dtype=np.int64)
    return pairs[:, 0], pairs[:, 1]


def keeps_an_index(config: DedupConfig, index_dir: str | Path | None) -> bool:
    """Whether the run checks against and grows a persistent index (a folder, or Redis); refused without signatures."""
    keeps = bool(index_dir) or config.lsh_storage == "redis"
    if keeps and not config.near:
        raise ValueError("a persistent dedup index stores signatures: it needs near-duplicate detection (near: true)")
    return keeps


def known_documents(config: DedupConfig, index: DedupIndex | None, corpus: CorpusKey) -> KnownDocuments:
    """What the other corpora kept: the index folder's tables, or Redis (nothing, without an index)."""
    if config.lsh_storage == "redis":
        return RedisKnownDocuments(config, corpus)
    return LocalKnownDocuments(index, config, corpus)


def refuse_an_empty_result(counts: dict[str, int], allow_empty: bool) -> None:
    """Dedup that would keep nothing of a non-empty corpus stops here, naming what took most of it: a corpus
    deduplicated against an index that already holds it, or a threshold that makes everything one cluster."""
    if allow_empty or counts["kept"] or not counts["documents"]:
        return
    reasons = {
        "exact_duplicate of the dedup index": counts["exact_duplicates_of_index"],
        "exact_duplicate within the corpus": counts["exact_duplicates"] - counts["exact_duplicates_of_index"],
        "near_duplicate_of_index": counts["near_duplicates_of_index"],
        "near_duplicate within the corpus": counts["near_duplicates"],
    }
    reason, count = max(reasons.items(), key=lambda item: item[1])
    advice = (
        "another corpus in the index already holds these documents: remake that corpus in its own folder, or use "
        "another index"
        if "index" in reason
        else "raise dedup.threshold"
    )
    raise EmptyCorpusError(
        f"dedup would remove every document ({count} of {counts['documents']} as {reason}); nothing was written "
        f"and the previous output is kept: {advice}"
    )


def add_to_index(part_file: Path, index: DedupIndex | None, known: KnownDocuments) -> dict:
    """The kept documents' rows, replacing the corpus's earlier ones: in the index folder, or in Redis."""
    if index is not None:
        index.add(part_file, known.corpus)
    known.add(part_file)
    return {} if index is None else {"index_documents": len(index)}


def deduplicate_files(
    sources: list[str | Path],
    output_dir: str | Path,
    config: DedupConfig,
    index_dir: str | Path | None = None,
    corpus: CorpusKey | str = "",
    rejected_dir: str | Path | None = None,
    allow_empty: bool = False,
) -> dict:
    """Write `part-NNNNN.parquet` per source with duplicates removed; with an index, deduplicate against the other
    corpora in it and replace `corpus`'s entries with what it keeps. With `rejected_dir`, the removed documents go to
    `rejected_dir/<reason>/part-NNNNN.parquet` (`exact_duplicate`, `near_duplicate_of_index`, `near_duplicate`).
    Keeping nothing of a non-empty input is an `EmptyCorpusError` before anything is written, unless `allow_empty`."""
    keeps_index = keeps_an_index(config, index_dir)
    index = DedupIndex(index_dir, config) if index_dir else None
    known = known_documents(config, index, as_corpus_key(corpus))
    stats = Stats(*STATS)
    scratch = Path(output_dir) / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        candidates = _Candidates(config, scratch)
        first_document, source_rows = 0, []
        for source in sources:
            for batch in read_batches(source, BATCH, ["id", "text", "lang"]):
                candidates.add_batch(first_document, batch.to_pylist(), known, stats)
                first_document += batch.num_rows
            source_rows.append(first_document - sum(source_rows))
        removed = candidates.removed(stats)
        stats.update("near_duplicates", len(removed))
        stats.update("kept", candidates.count - len(removed))
        refuse_an_empty_result(stats.as_dict(), allow_empty)
        part_file = scratch / "index-part.parquet"
        with PartWriter(part_file, config.num_perm) if keeps_index else nullcontext() as index_part:
            rejected_root = None if rejected_dir is None else Path(rejected_dir)
            parts, rejected = _write_kept(
                sources, source_rows, Path(output_dir), candidates, removed, index_part, rejected_root
            )
            result = stats.as_dict() | {"parts": parts, "rejected": rejected}
        if keeps_index:
            result |= add_to_index(part_file, index, known)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _write_kept(
    sources: list[str | Path],
    source_rows: list[int],
    output_dir: Path,
    candidates: _Candidates,
    removed: np.ndarray,
    index_part: PartWriter | None,
    rejected_root: Path | None,
) -> tuple[list[dict], dict[str, list[str]]]:
    """The second pass: each source's verdicts written by `write_part`."""
    parts, rejected, first_document = [], {}, 0
    for number, (source, rows) in enumerate(zip(sources, source_rows, strict=True)):
        verdicts, kept = candidates.verdicts(first_document, first_document + rows, removed)
        index_rows = KeptRows(candidates.exact_keys.view(), candidates.signatures.view(), kept)
        written = write_part(
            source, output_dir / f"part-{number:05d}.parquet", verdicts, index_rows, index_part, rejected_root
        )
        parts.append({"path": written.path.name, "documents": written.documents})
        for reason, path in written.rejected.items():
            rejected.setdefault(reason, []).append(path)
        first_document += rows
    return parts, rejected
