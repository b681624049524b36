"""The dedup index in Redis: one index that several machines share, nothing reloaded per run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import redis

from tinylm.config import DedupConfig
from tinylm.corpus.dedup.index import CorruptIndexError, agrees, index_settings, lsh_for, read_part, sketch


class RedisKnownDocuments:
    """What earlier corpora kept, in Redis: datasketch's LSH with Redis storage, plus signatures,
    exact keys and the run that added each entry, so matches are verified and a run being
    redone ignores what it added itself. Nothing is reloaded per run; machines share it."""

    def __init__(self, config: DedupConfig, run_key: str) -> None:
        parsed = urlparse(config.redis_url)
        params = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 6379,
            "db": int(parsed.path.strip("/") or 0),
        }
        self.client = redis.Redis(**params)
        try:
            stored = self.client.get(f"{config.redis_prefix}:settings")
        except redis.exceptions.ConnectionError as error:
            raise ConnectionError(f"Redis for the dedup index is unreachable at {config.redis_url}: {error}") from error
        settings = json.dumps(index_settings(config), sort_keys=True)
        if stored is not None and stored.decode() != settings:
            raise CorruptIndexError(
                f"Redis index {config.redis_prefix!r} at {config.redis_url} was built with {stored.decode()}"
            )
        self.client.set(f"{config.redis_prefix}:settings", settings)
        self.config, self.run_key, self.prefix = config, run_key, config.redis_prefix
        self.lsh = lsh_for(config, {"type": "redis", "basename": config.redis_prefix.encode(), "redis": params})

    def seen_exact(self, keys: list[bytes]) -> np.ndarray:
        runs = self.client.hmget(f"{self.prefix}:exact", keys) if keys else []
        return np.array([run is not None and run.decode() != self.run_key for run in runs], dtype=bool)

    def near(self, signatures: np.ndarray) -> np.ndarray:
        return np.array([self._near(signature) for signature in signatures], dtype=bool)

    def _near(self, signature: np.ndarray) -> bool:
        found = self.lsh.query(sketch(signature, self.config))
        if not found:
            return False
        stored = self.client.hmget(f"{self.prefix}:signatures", found)
        runs = self.client.hmget(f"{self.prefix}:added_by", found)
        return any(
            run is not None
            and run.decode() != self.run_key
            and agrees(np.frombuffer(sig, dtype="<u4"), signature, self.config)
            for sig, run in zip(stored, runs)
        )

    def add(self, part_file: Path) -> None:
        """Insert a part written by `PartWriter`, a batch at a time."""
        for part in read_part(part_file, self.config.num_perm):
            with self.lsh.insertion_session() as session:
                for doc_id, signature in zip(part.ids, part.signatures):
                    session.insert(doc_id, sketch(signature, self.config), check_duplication=False)
            pipeline = self.client.pipeline()
            for doc_id, key, signature in zip(part.ids, part.exact_keys, part.signatures):
                pipeline.hset(f"{self.prefix}:signatures", doc_id, signature.astype("<u4").tobytes())
                pipeline.hset(f"{self.prefix}:added_by", doc_id, self.run_key)
                pipeline.hset(f"{self.prefix}:exact", key, self.run_key)
            pipeline.execute()
