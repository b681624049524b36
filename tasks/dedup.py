"""Dedup stage: exact duplicates by normalized-text hash, near duplicates by MinHash LSH.

Documents are visited in corpus order and the first of a group is kept, so the result
is deterministic for a given input order.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from datasketch import LeanMinHash, MinHashLSH
from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import DedupConfig
from tinylm.storage.documents import DocumentWriter
from tinylm.tasks.minhash import MinHasher

_WHITESPACE = re.compile(r"\s+")


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalized: copies that differ only there collide."""
    normalized = _WHITESPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


class NearDuplicateIndex:
    """datasketch's MinHash LSH over the documents kept so far, fed with batch-computed signatures."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.hasher = MinHasher(config.num_perm, config.seed)
        self.lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)

    def signatures(self, documents: list[dict]) -> np.ndarray:
        return self.hasher.signatures(
            [d["text"] for d in documents], [d["lang"] for d in documents], self.config.zh_ngram, self.config.en_ngram
        )

    def add_if_new(self, key: str, signature: np.ndarray) -> bool:
        """Insert the document unless a near duplicate is already indexed; True when inserted."""
        sketch = LeanMinHash(seed=self.config.seed, hashvalues=signature, scheme="affine32")
        if self.lsh.query(sketch):
            return False
        self.lsh.insert(key, sketch, check_duplication=False)
        return True


def _first_time(key: bytes, seen: set[bytes]) -> bool:
    if key in seen:
        return False
    seen.add(key)
    return True


def deduplicate_files(sources: list[str | Path], output_dir: str | Path, config: DedupConfig) -> dict:
    """Write `part-NNNNN.parquet` for each source with exact and near duplicates removed.

    Sources are visited in the order given, so the first occurrence in corpus order is
    the one kept. Parts are written atomically; the caller's manifest marks completion.
    """
    output_dir = Path(output_dir)
    seen_exact: set[bytes] = set()
    near = NearDuplicateIndex(config) if config.near else None
    stats = {"documents": 0, "exact_duplicates": 0, "near_duplicates": 0, "kept": 0, "parts": []}
    for index, source in enumerate(sources):
        part = output_dir / f"part-{index:05d}.parquet"
        with DocumentWriter(part) as writer:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
                documents = batch.to_pylist()
                stats["documents"] += len(documents)
                if config.exact:
                    documents = [d for d in documents if _first_time(exact_key(d["text"]), seen_exact)]
                    stats["exact_duplicates"] += batch.num_rows - len(documents)
                if near:
                    signatures = near.signatures(documents)
                    unique = [d for d, signature in zip(documents, signatures) if near.add_if_new(d["id"], signature)]
                    stats["near_duplicates"] += len(documents) - len(unique)
                    documents = unique
                for document in documents:
                    writer.write(document)
                stats["kept"] += len(documents)
        stats["parts"].append({"path": part.name, "documents": writer.rows})
    return stats


deduplicate_files_task = task(deduplicate_files, name="deduplicate", cache_policy=NO_CACHE)
