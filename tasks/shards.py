"""Shards stage: corpus text to fixed-size token shards plus a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ShardsConfig
from tinylm.storage.atomic import remove_stale_temps
from tinylm.storage.documents import corpus_parts, iter_document_batches
from tinylm.storage.manifest import fingerprint, is_complete, manifest_hash, read_manifest, write_manifest
from tinylm.storage.shards import ShardWriter, token_dtype
from tinylm.tasks.tokenizer import EOS, load_tokenizer


def build_shards(corpus_dir: str | Path, tokenizer_dir: str | Path, output_dir: str | Path, config: ShardsConfig) -> dict:
    """Encode every document, append EOS, and cut the stream into shards of `shard_tokens` ids."""
    output_dir = Path(output_dir)
    tokenizer_hash = read_manifest(tokenizer_dir)["tokenizer_sha256"]
    expected = fingerprint("shards", config, {"corpus": manifest_hash(corpus_dir), "tokenizer": tokenizer_hash})
    if is_complete(output_dir, expected):
        return read_manifest(output_dir) | {"reused": True}
    remove_stale_temps(output_dir)
    for stale in output_dir.glob("shard-*.bin"):
        stale.unlink()
    tokenizer = load_tokenizer(tokenizer_dir)
    vocab_size = tokenizer.get_vocab_size()
    eos = tokenizer.token_to_id(EOS)
    writer = ShardWriter(output_dir, config.shard_tokens, token_dtype(vocab_size))
    documents = 0
    for batch in iter_document_batches(corpus_parts(corpus_dir), ["text", "source"], config.batch_documents):
        texts, sources = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        for encoding, source in zip(tokenizer.encode_batch(texts, add_special_tokens=False), sources):
            writer.add(np.append(np.asarray(encoding.ids, dtype=np.int64), eos), source)
            documents += 1
    shards = writer.close()
    if documents == 0:
        raise ValueError(f"corpus {corpus_dir} has no documents: there is nothing to shard")
    manifest = {
        "stage": "shards",
        "fingerprint": expected,
        "tokenizer_sha256": tokenizer_hash,
        "tokenizer_dir": str(Path(tokenizer_dir).resolve()),
        "vocab_size": vocab_size,
        "eos_id": eos,
        "dtype": writer.dtype.str,
        "shard_tokens": config.shard_tokens,
        "total_tokens": sum(shard["tokens"] for shard in shards),
        "documents": documents,
        "shards": shards,
    }
    write_manifest(output_dir, manifest)
    return manifest | {"reused": False}


build_shards_task = task(build_shards, name="build-shards", cache_policy=NO_CACHE)
