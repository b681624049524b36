"""pipeline flow: corpus, tokenizer, shards and train as subflows under one workspace."""

from __future__ import annotations

from prefect import flow

from tinylm.config import PipelineConfig
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.shards import shards_flow
from tinylm.flows.tokenizer import tokenizer_flow
from tinylm.flows.train import train_flow


@flow(name="pipeline")
def pipeline_flow(config: PipelineConfig = PipelineConfig()) -> dict:
    corpus_dir, tokenizer_dir, shards_dir = (str(config.stage_dir(s)) for s in ("corpus", "tokenizers", "shards"))
    corpus = corpus_flow(config.inputs, corpus_dir, config.corpus)
    tokenizer = tokenizer_flow(corpus_dir, tokenizer_dir, config.tokenizer)
    shards = shards_flow(corpus_dir, tokenizer_dir, shards_dir, config.shards)
    trained = train_flow(shards_dir, config.train, config.workspace)
    return {
        "corpus": corpus_dir,
        "documents": corpus["stats"]["kept"],
        "tokenizer": tokenizer_dir,
        "vocab_size": tokenizer["vocab_size"],
        "shards": shards_dir,
        "tokens": shards["total_tokens"],
        **trained,
    }
