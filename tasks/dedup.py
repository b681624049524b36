"""Dedup stage: exact duplicates by normalized-text hash, near duplicates by MinHash LSH.

Documents are visited in corpus order and the first of a group is kept, so the result
is deterministic for a given input order.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH
from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import DedupConfig
from tinylm.storage.documents import DocumentWriter

_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalized: copies that differ only there collide."""
    normalized = _WHITESPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


def shingles(text: str, lang: str | None, config: DedupConfig) -> set[bytes]:
    """Character n-grams for Chinese (which has no spaces), word n-grams otherwise."""
    if lang == "zh":
        chars = _WHITESPACE.sub("", text)
        n = config.zh_ngram
        grams = {chars[i : i + n] for i in range(max(1, len(chars) - n + 1))}
    else:
        words = _WORD.findall(text.lower())
        n = config.en_ngram
        grams = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
    return {gram.encode("utf-8") for gram in grams}


class NearDuplicateIndex:
    """MinHash LSH over the documents kept so far."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)

    def signature(self, grams: set[bytes]) -> MinHash:
        minhash = MinHash(num_perm=self.config.num_perm, seed=self.config.seed)
        minhash.update_batch(list(grams))
        return minhash

    def add_if_new(self, key: str, grams: set[bytes]) -> bool:
        """Insert the document unless a near duplicate is already indexed; True when inserted."""
        minhash = self.signature(grams)
        if self.lsh.query(minhash):
            return False
        self.lsh.insert(key, minhash, check_duplication=False)
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
                for document in batch.to_pylist():
                    stats["documents"] += 1
                    if config.exact:
                        key = exact_key(document["text"])
                        if key in seen_exact:
                            stats["exact_duplicates"] += 1
                            continue
                        seen_exact.add(key)
                    if near and not near.add_if_new(document["id"], shingles(document["text"], document["lang"], config)):
                        stats["near_duplicates"] += 1
                        continue
                    writer.write(document)
                    stats["kept"] += 1
        stats["parts"].append({"path": part.name, "documents": writer.rows})
    return stats


deduplicate_files_task = task(deduplicate_files, name="deduplicate", cache_policy=NO_CACHE)
