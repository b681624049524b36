"""The dedup index in Redis: one index that several machines share, nothing reloaded per run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import redis

from tinylm.config import DedupConfig
from tinylm.corpus.dedup.index import (
    CorpusKey,
    CorruptIndexError,
    agrees,
    index_settings,
    lsh_for,
    read_part,
    sketch,
)


class RedisKnownDocuments:
    """What the other corpora kept, in Redis: datasketch's LSH with Redis storage, plus signatures, exact keys and
    the corpus each entry belongs to, so matches are verified and the corpus being made ignores, then replaces, its
    own earlier entries. Nothing is reloaded per run; machines share it.

    An entry's LSH key is `<corpus>\x1f<document id>`, so two corpora's documents of one id stay apart, and each
    corpus's keys are listed in a set (`:members:<corpus>`, `:exact-keys:<corpus>`) that replacing it walks. Entries
    an older tinylm wrote (bare ids, tagged with a run's fingerprint) are found by scanning, once."""

    def __init__(self, config: DedupConfig, corpus: CorpusKey) -> None:
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
        self.config, self.corpus, self.prefix = config, corpus, config.redis_prefix
        self.lsh = lsh_for(config, {"type": "redis", "basename": config.redis_prefix.encode(), "redis": params})

    def _other(self, owner: bytes | None) -> bool:
        return owner is not None and not self.corpus.owns(owner.decode())

    def seen_exact(self, keys: list[bytes]) -> np.ndarray:
        owners = self.client.hmget(f"{self.prefix}:exact", keys) if keys else []
        return np.array([self._other(owner) for owner in owners], dtype=bool)

    def near(self, signatures: np.ndarray) -> np.ndarray:
        return np.array([self._near(signature) for signature in signatures], dtype=bool)

    def _near(self, signature: np.ndarray) -> bool:
        found = self.lsh.query(sketch(signature, self.config))
        if not found:
            return False
        stored = self.client.hmget(f"{self.prefix}:signatures", found)
        owners = self.client.hmget(f"{self.prefix}:added_by", found)
        return any(
            self._other(owner) and agrees(np.frombuffer(sig, dtype="<u4"), signature, self.config)
            for sig, owner in zip(stored, owners)
        )

    def add(self, part_file: Path) -> None:
        """Replace the corpus's earlier entries with a part written by `PartWriter`, inserted a batch at a time."""
        self._remove_own_entries()
        name = self.corpus.name
        members, exact_keys = f"{self.prefix}:members:{name}", f"{self.prefix}:exact-keys:{name}"
        for part in read_part(part_file, self.config.num_perm):
            keys = [f"{name}\x1f{doc_id}" for doc_id in part.ids]
            with self.lsh.insertion_session() as session:
                for key, signature in zip(keys, part.signatures):
                    session.insert(key, sketch(signature, self.config), check_duplication=False)
            pipeline = self.client.pipeline()
            for key, exact, signature in zip(keys, part.exact_keys, part.signatures):
                pipeline.hset(f"{self.prefix}:signatures", key, signature.astype("<u4").tobytes())
                pipeline.hset(f"{self.prefix}:added_by", key, name)
                pipeline.hset(f"{self.prefix}:exact", exact, name)
                pipeline.sadd(members, key)
                pipeline.sadd(exact_keys, exact)
            pipeline.execute()

    def _remove_own_entries(self) -> None:
        """The corpus's entries out of the LSH and the hashes: those its sets list, and an older tinylm's, scanned."""
        name = self.corpus.name
        members, exact_keys = f"{self.prefix}:members:{name}", f"{self.prefix}:exact-keys:{name}"
        keys = list(self.client.smembers(members))
        exact = list(self.client.smembers(exact_keys))
        if self.corpus.legacy_runs:
            keys += [key for key, owner in self.client.hscan_iter(f"{self.prefix}:added_by") if self._owned(owner)]
            exact += [key for key, owner in self.client.hscan_iter(f"{self.prefix}:exact") if self._owned(owner)]
        owners = self.client.hmget(f"{self.prefix}:added_by", keys) if keys else []
        keys = [key for key, owner in zip(keys, owners) if self._owned(owner)]
        exact_owners = self.client.hmget(f"{self.prefix}:exact", exact) if exact else []
        exact = [key for key, owner in zip(exact, exact_owners) if self._owned(owner)]
        for key in keys:
            self.lsh.remove(key.decode())
        pipeline = self.client.pipeline()
        for key in keys:
            pipeline.hdel(f"{self.prefix}:signatures", key)
            pipeline.hdel(f"{self.prefix}:added_by", key)
        for key in exact:
            pipeline.hdel(f"{self.prefix}:exact", key)
        pipeline.delete(members, exact_keys)
        pipeline.execute()

    def _owned(self, owner: bytes | None) -> bool:
        return owner is not None and self.corpus.owns(owner.decode())
