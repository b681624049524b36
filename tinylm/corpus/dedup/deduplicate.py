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
from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import DedupConfig
from tinylm.corpus.dedup.index import (
    DedupIndex,
    IndexPart,
    LocalKnownDocuments,
    RedisKnownDocuments,
    SignatureMatcher,
)
from tinylm.storage.documents import DocumentWriter
from tinylm.corpus.dedup.minhash import MinHasher
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS

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


def deduplicate_files(
    sources: list[str | Path], output_dir: str | Path, config: DedupConfig, index_dir: str | Path | None = None, run_key: str = ""
) -> dict:
    """Write `part-NNNNN.parquet` per source with duplicates removed; grow the index if one is given.

    Two passes over the sources: the first decides, the second writes, so no document
    text is held in memory, only 16-byte keys and signatures of the candidates.
    """
    if (index_dir or config.lsh_storage == "redis") and not config.near:
        raise ValueError("a persistent dedup index stores signatures: it needs near-duplicate detection (near: true)")
    output_dir = Path(output_dir)
    hasher = MinHasher(config.num_perm, config.seed)
    index = DedupIndex(index_dir, config) if index_dir else None
    known = (
        RedisKnownDocuments(config, run_key) if config.lsh_storage == "redis" else LocalKnownDocuments(index, config, run_key)
    )
    seen_exact: set[bytes] = set()
    stats = {"documents": 0, "exact_duplicates": 0, "near_duplicates_of_index": 0, "near_duplicates": 0, "kept": 0}
    candidates: list[tuple[int, int, str, int, bytes]] = []
    clusters, among_new = _Clusters(), SignatureMatcher(config)
    for source_index, source in enumerate(sources):
        row = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=_BATCH, columns=["id", "text", "lang"]):
            documents = batch.to_pylist()
            stats["documents"] += len(documents)
            keys = [exact_key(document["text"]) for document in documents]
            in_index = known.seen_exact(keys) if config.exact else np.zeros(len(keys), dtype=bool)
            fresh = []
            for offset, (document, key) in enumerate(zip(documents, keys)):
                if config.exact and (key in seen_exact or in_index[offset]):
                    stats["exact_duplicates"] += 1
                    continue
                seen_exact.add(key)
                fresh.append((row + offset, document, key))
            row += len(documents)
            if not config.near:
                candidates.extend((source_index, r, d["id"], len(d["text"]), k) for r, d, k in fresh)
                continue
            batch_signatures = hasher.signatures(
                [d["text"] for _, d, _ in fresh], [d["lang"] for _, d, _ in fresh], config.zh_ngram, config.en_ngram
            )
            for (position, document, key), signature, of_index in zip(fresh, batch_signatures, known.near(batch_signatures)):
                if of_index:
                    stats["near_duplicates_of_index"] += 1
                    continue
                candidate = clusters.add()
                for match in among_new.matches(signature):
                    clusters.union(candidate, match)
                among_new.add(signature)
                candidates.append((source_index, position, document["id"], len(document["text"]), key))
    keepers: dict[int, int] = {}
    for candidate, (_, _, doc_id, length, _) in enumerate(candidates):
        root = clusters.find(candidate) if config.near else candidate
        best = keepers.get(root)
        if best is None or _preferred(length, doc_id, candidates[best][3], candidates[best][2]):
            keepers[root] = candidate
    kept = sorted(keepers.values())
    sizes = Counter(Counter(clusters.find(c) for c in range(len(candidates))).values()) if config.near else Counter()
    stats["near_duplicates"] = len(candidates) - len(kept)
    stats["near_duplicate_clusters"] = {str(size): count for size, count in sorted(sizes.items()) if size > 1}
    stats["parts"] = _write_kept(sources, output_dir, {(candidates[c][0], candidates[c][1]) for c in kept})
    stats["kept"] = len(kept)
    if config.near:
        part = IndexPart(
            [candidates[c][2] for c in kept],
            [candidates[c][4] for c in kept],
            np.array([among_new.rows[c] for c in kept], dtype=np.uint32).reshape(len(kept), config.num_perm),
        )
        if index is not None:
            index.add(part, added_by=run_key)
            stats["index_documents"] = len(index)
        known.add(part)
    return stats


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


deduplicate_files_task = task(deduplicate_files, name="deduplicate", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
