"""Dedup stage: exact duplicates by normalized-text hash, near duplicates by MinHash LSH.

Rules, in this order:
  * a document whose normalized text was seen before (in this run or in the index) is an
    exact duplicate; the first in corpus order is kept;
  * a document whose signature matches one in the persistent index near-duplicates an
    earlier corpus and is dropped;
  * the rest are grouped into clusters (connected components of LSH matches), and each
    cluster keeps its longest document, ties going to the smallest id.
The kept documents' keys and signatures then join the index, so next month's corpus is
deduplicated against this one.

Two passes over the sources: the first decides, the second writes. No text is held, and
what the decisions need per document (keys, signatures, lengths, ids) goes to a scratch
directory (`spill.py`), so memory stays flat whatever the corpus's size; only the
clusters' union-find holds 8 bytes per candidate document.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa

from tinylm.config import DedupConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.dedup.index import DedupIndex, IndexPart, LocalKnownDocuments, PartWriter, banding
from tinylm.corpus.dedup.lookup_tables import band_keys, matching_pairs, sorted_columns
from tinylm.corpus.dedup.minhash import MinHasher
from tinylm.corpus.dedup.redis_index import RedisKnownDocuments
from tinylm.corpus.dedup.spill import AppendedRows, AppendedStrings, SortedKeyRuns
from tinylm.corpus.rejected import RejectedWriters
from tinylm.stats import Stats
from tinylm.storage.documents import DocumentWriter, read_batches

KnownDocuments = LocalKnownDocuments | RedisKnownDocuments
_WHITESPACE = re.compile(r"\s+")
_BATCH = 1024
SCRATCH = ".dedup-scratch"
DROPPED_BEFORE_CLUSTERING = ("exact_duplicate", "near_duplicate_of_index")


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalized: copies that differ only there collide."""
    normalized = _WHITESPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


class _Clusters:
    """Union-find over candidate numbers, in a numpy array that grows with them."""

    def __init__(self) -> None:
        self.parent = np.zeros(_BATCH, dtype=np.int64)
        self.size = 0

    def extend(self, count: int) -> None:
        if self.size + count > len(self.parent):
            self.parent = np.resize(self.parent, max(2 * len(self.parent), self.size + count))
        self.parent[self.size : self.size + count] = np.arange(self.size, self.size + count)
        self.size += count

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = int(parent[item])
        return item

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(first)] = self.find(second)

    def roots(self) -> np.ndarray:
        """Every candidate's cluster root, by pointer jumping until nothing moves."""
        roots = self.parent[: self.size].copy()
        while not np.array_equal(jumped := roots[roots], roots):
            roots = jumped
        return roots


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
        self.clusters = _Clusters()
        # The documents dropped before clustering, in corpus order, and why (an index into DROPPED_BEFORE_CLUSTERING).
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
            fresh = ~(known.seen_exact(key_list) | self._seen_in_run(keys))
            stats.update("exact_duplicates", int((~fresh).sum()))
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
        reasons = np.concatenate([np.zeros(len(exact), np.int8), np.ones(len(of_index), np.int8)])
        order = np.argsort(rows, kind="stable")
        self.dropped.append(first_document + rows[order])
        self.dropped_reasons.append(reasons[order])

    def dropped_between(self, start: int, stop: int) -> tuple[np.ndarray, list[str]]:
        """The corpus positions in [start, stop) dropped before clustering, and each one's reason."""
        positions = self.dropped.view()
        first, last = np.searchsorted(positions, [start, stop])
        reasons = self.dropped_reasons.view()[first:last]
        return positions[first:last], [DROPPED_BEFORE_CLUSTERING[reason] for reason in reasons.tolist()]

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
            for new, old in zip((first + new_rows).tolist(), (old_first + old_rows).tolist()):
                self.clusters.union(new, old)
        self.band_runs.add(keys, first)
        self.signatures.append(signatures)

    def removed(self, stats: Stats) -> np.ndarray:
        """The candidates that lose to another in their cluster (sorted): each cluster keeps its
        longest document, ties going to the smallest id."""
        if not self.config.near or self.count == 0:
            return np.zeros(0, dtype=np.int64)
        roots = self.clusters.roots()
        sizes = np.bincount(roots, minlength=self.count)
        for size, count in sorted(Counter(sizes[sizes > 1].tolist()).items()):
            stats.update(f"near_duplicate_clusters.{size}", count)
        members = np.flatnonzero(sizes[roots] > 1)
        lengths, ids = self.lengths.view()[members], self.ids.get(members)
        ranked = sorted(range(len(members)), key=lambda i: (roots[members[i]], -lengths[i], ids[i]))
        keepers: dict[int, int] = {}
        for i in ranked:
            keepers.setdefault(roots[members[i]], members[i])
        return np.setdiff1d(members, np.array(list(keepers.values()), dtype=np.int64))


def _unique_pairs(query: np.ndarray, earlier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (query, earlier) pair once (a pair matching in several bands comes once per band)."""
    pairs = np.unique(np.stack([query, earlier], axis=1), axis=0) if len(query) else np.zeros((0, 2), dtype=np.int64)
    return pairs[:, 0], pairs[:, 1]


def deduplicate_files(
    sources: list[str | Path],
    output_dir: str | Path,
    config: DedupConfig,
    index_dir: str | Path | None = None,
    run_key: str = "",
    rejected_dir: str | Path | None = None,
) -> dict:
    """Write `part-NNNNN.parquet` per source with duplicates removed; grow the index if one is given. With
    `rejected_dir`, the removed documents go to `rejected_dir/<reason>/part-NNNNN.parquet` (`exact_duplicate`,
    `near_duplicate_of_index`, `near_duplicate`)."""
    if (index_dir or config.lsh_storage == "redis") and not config.near:
        raise ValueError("a persistent dedup index stores signatures: it needs near-duplicate detection (near: true)")
    index = DedupIndex(index_dir, config) if index_dir else None
    known = (
        RedisKnownDocuments(config, run_key)
        if config.lsh_storage == "redis"
        else LocalKnownDocuments(index, config, run_key)
    )
    stats = Stats("documents", "exact_duplicates", "near_duplicates_of_index", "near_duplicates", "kept")
    scratch = Path(output_dir) / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        candidates = _Candidates(config, scratch)
        first_document = 0
        for source in sources:
            for batch in read_batches(source, _BATCH, ["id", "text", "lang"]):
                candidates.add_batch(first_document, batch.to_pylist(), known, stats)
                first_document += batch.num_rows
        removed = candidates.removed(stats)
        stats.update("near_duplicates", len(removed))
        stats.update("kept", candidates.count - len(removed))
        keeps_index = index is not None or config.lsh_storage == "redis"  # both need near: checked above
        part_file = scratch / "index-part.parquet"
        with PartWriter(part_file, config.num_perm) if keeps_index else nullcontext() as index_part:
            rejected_root = None if rejected_dir is None else Path(rejected_dir)
            parts, rejected = _write_kept(sources, Path(output_dir), candidates, removed, index_part, rejected_root)
            result = stats.as_dict() | {"parts": parts, "rejected": rejected}
        if keeps_index:
            if index is not None:
                index.add(part_file, added_by=run_key)
                result["index_documents"] = len(index)
            known.add(part_file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _write_kept(
    sources: list[str | Path],
    output_dir: Path,
    candidates: _Candidates,
    removed: np.ndarray,
    index_part: PartWriter | None,
    rejected_root: Path | None,
) -> tuple[list[dict], dict[str, list[str]]]:
    """The second pass: each source's kept documents to its part, their keys and signatures to the index part if one
    is kept, and the removed ones to their reasons' files under `rejected_root` if it is given."""
    positions, exact_keys, signatures = (
        candidates.documents.view(),
        candidates.exact_keys.view(),
        candidates.signatures.view(),
    )
    parts, rejected, first_document = [], {}, 0
    for source_index, source in enumerate(sources):
        part = output_dir / f"part-{source_index:05d}.parquet"
        with DocumentWriter(part) as writer, RejectedWriters(rejected_root, part.stem) as removals:
            for batch in read_batches(source, _BATCH):
                start, stop = np.searchsorted(positions, [first_document, first_document + batch.num_rows])
                kept = np.setdiff1d(np.arange(start, stop), removed, assume_unique=True)
                chosen = batch.take(pa.array(positions[kept] - first_document))
                for document in chosen.to_pylist():
                    writer.write(document)
                if index_part is not None:
                    index_part.write(
                        IndexPart(chosen.column("id").to_pylist(), list(exact_keys[kept]), signatures[kept])
                    )
                if rejected_root is not None:
                    _write_removed(
                        batch,
                        first_document,
                        candidates,
                        positions[np.intersect1d(np.arange(start, stop), removed, assume_unique=True)],
                        removals,
                    )
                first_document += batch.num_rows
        parts.append({"path": part.name, "documents": writer.rows})
        for reason, path in removals.paths.items():
            rejected.setdefault(reason, []).append(path)
    return parts, rejected


def _write_removed(
    batch: pa.RecordBatch,
    first_document: int,
    candidates: _Candidates,
    clustered_out: np.ndarray,
    removals: RejectedWriters,
) -> None:
    """A batch's removed documents, in corpus order, each under its reason."""
    dropped, reasons = candidates.dropped_between(first_document, first_document + batch.num_rows)
    positions = np.concatenate([dropped, clustered_out])
    reasons = reasons + ["near_duplicate"] * len(clustered_out)
    order = np.argsort(positions, kind="stable")
    documents = batch.take(pa.array(positions[order] - first_document)).to_pylist()
    for document, index in zip(documents, order.tolist(), strict=True):
        removals.write(reasons[index], document)
