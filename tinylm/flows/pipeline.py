"""pipeline flow: corpus, tokenizer, shards and train as subflows under one workspace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow

from tinylm.config import PipelineConfig
from tinylm.corpus.dedup.index import INDEX_FILE
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.shards import shards_flow
from tinylm.flows.tokenizer import tokenizer_flow
from tinylm.flows.train import train_flow
from tinylm.storage.manifest import MANIFEST_NAME, fingerprint
from tinylm.storage.mirror import pull, push
from tinylm.tracking.groups import run_group


@contextmanager
def stopwatch(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Record a stage's wall time, so a run reports where its time went."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(time.perf_counter() - started, 1)


@contextmanager
def mirrored(config: PipelineConfig, directory: str | None, marker: str = MANIFEST_NAME) -> Iterator[None]:
    """With a mirror: fetch the directory before its stage if this machine lacks it, send it after."""
    url = config.mirror_of(directory) if directory else None
    if url is not None:
        pull(directory, url, marker)
    yield
    if url is not None:
        push(directory, url, marker)


def pipeline_key(config: PipelineConfig) -> str:
    """What makes two pipeline runs the same: the config (how it trains aside) and each input's size and
    modification time, cheap stand-ins for content that the corpus stage then hashes."""
    settings = config.model_dump(mode="json", exclude={"train": {"restart", "resume_run_id", "verify_shards"}})
    stamps = {}
    for path in config.inputs:
        info = Path(path).stat() if Path(path).exists() else None
        stamps[path] = f"{info.st_size}:{info.st_mtime_ns}" if info else "missing"
    return fingerprint("pipeline", settings, stamps)


@flow(name="pipeline")
def pipeline_flow(config: PipelineConfig = PipelineConfig()) -> dict:
    corpus_dir, tokenizer_dir, shards_dir = (str(config.stage_dir(s)) for s in ("corpus", "tokenizers", "shards"))
    seconds: dict[str, float] = {}
    group = run_group(
        "pipeline", config.workspace, pipeline_key(config), config.train.experiment, {"tinylm.name": config.name}, config.train.restart
    )
    with group:
        with stopwatch(seconds, "corpus"), mirrored(config, corpus_dir), mirrored(config, config.index_dir(), INDEX_FILE):
            corpus = corpus_flow(config.inputs, corpus_dir, config.corpus, config.index_dir(), config.workspace)
        with stopwatch(seconds, "tokenizer"), mirrored(config, tokenizer_dir):
            tokenizer = tokenizer_flow(corpus_dir, tokenizer_dir, config.tokenizer, config.workspace)
        with stopwatch(seconds, "shards"), mirrored(config, shards_dir):
            shards = shards_flow(corpus_dir, tokenizer_dir, shards_dir, config.shards, config.workspace)
        with stopwatch(seconds, "train"):
            trained = train_flow(shards_dir, config.train, config.workspace)
    return {
        "seconds": seconds,
        "corpus": corpus_dir,
        "documents": corpus["stats"]["kept"],
        "tokenizer": tokenizer_dir,
        "vocab_size": tokenizer["vocab_size"],
        "shards": shards_dir,
        "tokens": shards["total_tokens"],
        **trained,
    }
