"""shards flow: tokenize a corpus into fixed-size token shards with a manifest."""

from __future__ import annotations

from prefect import flow

from tinylm.config import ShardsConfig
from tinylm.tasks.report import publish_stats
from tinylm.tasks.shards import build_shards_task


@flow(name="shards")
def shards_flow(
    corpus: str = "workspace/corpus/default",
    tokenizer: str = "workspace/tokenizers/default",
    output: str = "workspace/shards/default",
    config: ShardsConfig = ShardsConfig(),
) -> dict:
    manifest = build_shards_task(corpus, tokenizer, output, config)
    publish_stats(
        "shards",
        {"shards": len(manifest["shards"]), "total_tokens": manifest["total_tokens"], "documents": manifest["documents"]},
    )
    return manifest
