"""tokenizer flow: train byte-level BPE on a corpus."""

from __future__ import annotations

from prefect import flow

from tinylm.config import TokenizerConfig
from tinylm.tasks.report import publish_stats
from tinylm.tasks.tokenizer import train_tokenizer_task


@flow(name="tokenizer")
def tokenizer_flow(
    corpus: str = "workspace/corpus/default",
    output: str = "workspace/tokenizers/default",
    config: TokenizerConfig = TokenizerConfig(),
) -> dict:
    manifest = train_tokenizer_task(corpus, output, config)
    publish_stats("tokenizer", {"vocab_size": manifest["vocab_size"], **manifest["sample"]})
    return manifest
