"""Shards stage: corpus parts to mixed, fixed-size token shards, a validation split, and a manifest.

Two steps, both out of core. Each corpus part is encoded on its own (in parallel task
runs in the flow) into `_work/`; then one pass mixes the encoded documents into the
shards by weight, seed and a bounded shuffle buffer. The work directory is keyed by
what the encoding depends on (corpus, tokenizer, seed), so a run killed mid-way keeps
the parts it finished, and removed once the manifest is written.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinylm.config import ShardsConfig
from tinylm.storage.atomic import remove_stale_temps
from tinylm.storage.documents import corpus_parts
from tinylm.storage.manifest import fingerprint, finished_output, manifest_hash, write_manifest
from tinylm.tokens.encoding import EncodedPart, encode_part
from tinylm.tokens.mixing import DocumentRef, SourceCounts, Split, count_documents, training_stream, validation_stream
from tinylm.tokens.shard_files import TRAIN_PREFIX, VALIDATION_PREFIX, ShardsManifest, ShardWriter, token_dtype
from tinylm.tokens.tokenizer_files import EOS, load_tokenizer, tokenizer_sha256_of

WORK_DIR = "_work"


@dataclass(frozen=True)
class ShardJob:
    """One shards run: its inputs, where it writes, and the fingerprint its manifest will carry."""

    corpus_dir: Path
    tokenizer_dir: Path
    output_dir: Path
    config: ShardsConfig
    tokenizer_sha256: str
    fingerprint: str
    encoding_key: str

    @property
    def work_dir(self) -> Path:
        return self.output_dir / WORK_DIR / self.encoding_key[:16]

    @property
    def parts(self) -> list[Path]:
        return corpus_parts(self.corpus_dir)

    def finished(self) -> ShardsManifest | None:
        """The manifest of an identical earlier run, or None when there is work to do."""
        done = finished_output(self.output_dir, self.fingerprint, ShardsManifest)
        if done is not None:
            shutil.rmtree(self.output_dir / WORK_DIR, ignore_errors=True)
        return done


def plan_shards(
    corpus_dir: str | Path, tokenizer_dir: str | Path, output_dir: str | Path, config: ShardsConfig
) -> ShardJob:
    inputs = {"corpus": manifest_hash(corpus_dir), "tokenizer": tokenizer_sha256_of(tokenizer_dir)}
    return ShardJob(
        Path(corpus_dir),
        Path(tokenizer_dir),
        Path(output_dir),
        config,
        inputs["tokenizer"],
        fingerprint("shards", config.computing(), inputs),
        fingerprint("shards-encoding", {"seed": config.seed}, inputs),
    )


def encode_job_part(job: ShardJob, part: Path) -> EncodedPart:
    return encode_part(
        part, job.tokenizer_dir, job.tokenizer_sha256, job.work_dir, job.config.seed, job.config.batch_documents
    )


def mix_shards(job: ShardJob, encoded: list[EncodedPart]) -> ShardsManifest:
    """Write the training and validation shards from the encoded parts, then the manifest."""
    config, output = job.config, job.output_dir
    split = Split(config.validation_fraction, config.source_weights)
    counts = count_documents(encoded, split)
    if not counts.total("documents"):
        raise ValueError(f"corpus {job.corpus_dir} has no documents: there is nothing to shard")
    if not counts.total("training") and counts.total("validation"):
        split = Split(0.0, config.source_weights)
        counts = count_documents(encoded, split)
    if not counts.total("training"):
        raise ValueError(f"source_weights {config.source_weights} leave no document of {job.corpus_dir} to train on")
    remove_stale_temps(output)
    for stale in [*output.glob(f"{TRAIN_PREFIX}-*.bin"), *output.glob(f"{VALIDATION_PREFIX}-*.bin")]:
        stale.unlink()
    tokenizer = load_tokenizer(job.tokenizer_dir)
    dtype = token_dtype(tokenizer.get_vocab_size())
    ids = [part.memmap() for part in encoded]
    train = _write(
        ShardWriter(output, config.shard_tokens, dtype, TRAIN_PREFIX),
        training_stream(encoded, split, counts, config.shuffle_buffer, config.seed),
        ids,
    )
    validation = _write(
        ShardWriter(output, config.shard_tokens, dtype, VALIDATION_PREFIX), validation_stream(encoded, split), ids
    )
    manifest = ShardsManifest(
        stage="shards",
        fingerprint=job.fingerprint,
        tokenizer_sha256=job.tokenizer_sha256,
        tokenizer_dir=str(job.tokenizer_dir.resolve()),
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=tokenizer.token_to_id(EOS),
        dtype=dtype.str,
        shard_tokens=config.shard_tokens,
        **train,
        validation=validation,
        sources=_source_totals(counts, train["shards"], validation["shards"], config.source_weights),
        mixing={
            "seed": config.seed,
            "shuffle_buffer": config.shuffle_buffer,
            "validation_fraction": split.validation_fraction,
            "source_weights": dict(config.source_weights),
        },
    )
    manifest = write_manifest(output, manifest)
    shutil.rmtree(output / WORK_DIR, ignore_errors=True)
    return manifest


def _write(writer: ShardWriter, documents: Iterable[DocumentRef], ids: list[np.ndarray]) -> dict:
    for source, part, start, length in documents:
        writer.add(ids[part][start : start + length], source)
    shards = writer.close()
    return {
        "shards": shards,
        "total_tokens": sum(s["tokens"] for s in shards),
        "documents": sum(s["documents"] for s in shards),
    }


def _source_totals(
    counts: SourceCounts, train: list[dict], validation: list[dict], weights: dict[str, float]
) -> dict[str, dict]:
    train_tokens, validation_tokens = Counter(), Counter()
    for shard in train:
        train_tokens.update(shard["sources"])
    for shard in validation:
        validation_tokens.update(shard["sources"])
    return {
        source: {
            "documents": counts.documents[source],
            "weight": weights.get(source, 1.0),
            "train_documents": counts.training[source],
            "train_tokens": train_tokens[source],
            "validation_documents": counts.validation[source],
            "validation_tokens": validation_tokens[source],
        }
        for source in sorted(counts.documents)
    }
