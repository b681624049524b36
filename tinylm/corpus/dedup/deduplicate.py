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
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tinylm.config import DedupConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.dedup.index import (
    DedupIndex,
    IndexPart,
    LocalKnownDocuments,
    SignatureMatcher,
)
from tinylm.corpus.dedup.minhash import MinHasher
from tinylm.corpus.dedup.redis_index import RedisKnownDocuments
from tinylm.stats import Stats
from tinylm.storage.documents import DocumentWriter

KnownDocuments = LocalKnownDocuments | RedisKnownDocuments
_WHITESPACE = re.compile(r"\s+")
_BATCH = 1024


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalized: copies that differ only there collide."""
    normalized = _WHITESPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


class _Clusters:
    """Union-find over candidate positions."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(first)] = self.find(second)


class _Candidates:
    """Documents that survive the exact and index checks, clustered by their LSH matches among themselves.

    Only 16-byte keys, lengths and signatures are held, never the texts.
    """

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.hasher = MinHasher(config.num_perm, config.seed)
        self.seen_exact: set[bytes] = set()
        self.items: list[tuple[int, int, str, int, bytes]] = []  # (source, row, id, length, exact key)
        self.clusters = _Clusters()
        self.among_new = SignatureMatcher(config)

    def add_batch(self, source: int, first_row: int, documents: list[dict], known: KnownDocuments, stats: Stats) -> None:
        config = self.config
        stats.update("documents", len(documents))
        texts = [without_chat_markers(document["text"]) for document in documents]
        keys = [exact_key(text) for text in texts]
        in_index = known.seen_exact(keys) if config.exact else np.zeros(len(keys), dtype=bool)
        fresh = []
        for offset, (document, text, key) in enumerate(zip(documents, texts, keys)):
            if config.exact and (key in self.seen_exact or in_index[offset]):
                stats.update("exact_duplicates")
                continue
            self.seen_exact.add(key)
            fresh.append((first_row + offset, document, text, key))
        if not config.near:
            self.items.extend((source, row, document["id"], len(document["text"]), key) for row, document, _, key in fresh)
            return
        signatures = self.hasher.signatures(
            [text for _, _, text, _ in fresh], [document["lang"] for _, document, _, _ in fresh], config.zh_ngram, config.en_ngram
        )
        for (row, document, _, key), signature, of_index in zip(fresh, signatures, known.near(signatures)):
            if of_index:
                stats.update("near_duplicates_of_index")
                continue
            candidate = self.clusters.add()
            for match in self.among_new.matches(signature):
                self.clusters.union(candidate, match)
            self.among_new.add(signature)
            self.items.append((source, row, document["id"], len(document["text"]), key))

    def keepers(self) -> list[int]:
        """Each cluster's longest document, ties to the smallest id; without near dedup, every candidate."""
        best: dict[int, int] = {}
        for candidate, (_, _, doc_id, length, _) in enumerate(self.items):
            root = self.clusters.find(candidate) if self.config.near else candidate
            current = best.get(root)
            if current is None or _preferred(length, doc_id, self.items[current][3], self.items[current][2]):
                best[root] = candidate
        return sorted(best.values())

    def cluster_sizes(self) -> Counter[int]:
        """How many near-duplicate clusters there are of each size."""
        if not self.config.near:
            return Counter()
        return Counter(Counter(self.clusters.find(candidate) for candidate in range(len(self.items))).values())

    def index_part(self, kept: list[int]) -> IndexPart:
        signatures = np.array([self.among_new.rows[c] for c in kept], dtype=np.uint32).reshape(len(kept), self.config.num_perm)
        return IndexPart([self.items[c][2] for c in kept], [self.items[c][4] for c in kept], signatures)


def deduplicate_files(
    sources: list[str | Path], output_dir: str | Path, config: DedupConfig, index_dir: str | Path | None = None, run_key: str = ""
) -> dict:
    """Write `part-NNNNN.parquet` per source with duplicates removed; grow the index if one is given.

    Two passes over the sources: the first decides, the second writes, so no document
    text is held in memory, only 16-byte keys and signatures of the candidates.
    """
    if (index_dir or config.lsh_storage == "redis") and not config.near:
        raise ValueError("a persistent dedup index stores signatures: it needs near-duplicate detection (near: true)")
    index = DedupIndex(index_dir, config) if index_dir else None
    known = RedisKnownDocuments(config, run_key) if config.lsh_storage == "redis" else LocalKnownDocuments(index, config, run_key)
    stats = Stats("documents", "exact_duplicates", "near_duplicates_of_index", "near_duplicates", "kept")
    candidates = _Candidates(config)
    for source_index, source in enumerate(sources):
        row = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=_BATCH, columns=["id", "text", "lang"]):
            documents = batch.to_pylist()
            candidates.add_batch(source_index, row, documents, known, stats)
            row += len(documents)
    kept = candidates.keepers()
    stats.update("near_duplicates", len(candidates.items) - len(kept))
    stats.update("kept", len(kept))
    for size, count in sorted(candidates.cluster_sizes().items()):
        if size > 1:
            stats.update(f"near_duplicate_clusters.{size}", count)
    result = stats.as_dict() | {"parts": _write_kept(sources, Path(output_dir), {candidates.items[c][:2] for c in kept})}
    if config.near:
        part = candidates.index_part(kept)
        if index is not None:
            index.add(part, added_by=run_key)
            result["index_documents"] = len(index)
        known.add(part)
    return result


def _preferred(length: int, doc_id: str, best_length: int, best_id: str) -> bool:
    """The cluster rule: the longest document, ties going to the smallest id."""
    return length > best_length or (length == best_length and doc_id < best_id)


def _write_kept(sources: list[str | Path], output_dir: Path, kept: set[tuple[int, int]]) -> list[dict]:
    parts = []
    for source_index, source in enumerate(sources):
        part = output_dir / f"part-{source_index:05d}.parquet"
        row = 0
        with DocumentWriter(part) as writer:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=_BATCH):
                for document in batch.to_pylist():
                    if (source_index, row) in kept:
                        writer.write(document)
                    row += 1
        parts.append({"path": part.name, "documents": writer.rows})
    return parts
