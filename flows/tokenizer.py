"""tokenizer flow: train byte-level BPE on a corpus."""

from __future__ import annotations

from prefect import flow

from tinylm.config import TokenizerConfig
from tinylm.tasks.report import log_stats_to_mlflow, publish_stats
from tinylm.tasks.tokenizer import train_tokenizer_task


@flow(name="tokenizer")
def tokenizer_flow(
    corpus: str = "workspace/corpus/default",
    output: str = "workspace/tokenizers/default",
    config: TokenizerConfig = TokenizerConfig(),
    workspace: str = "workspace",
) -> dict:
    """Train (or reuse) the tokenizer; its files, sample sizes and held-out compression go to MLflow."""
    manifest = train_tokenizer_task(corpus, output, config)
    stats = {key: manifest[key] for key in ("vocab_size", "sample", "compression", "memory", "train_seconds")}
    publish_stats("tokenizer", stats)
    if not manifest["reused"]:
        params = {"corpus": corpus, "output": output, **config.model_dump(mode="json")}
        log_stats_to_mlflow("tokenizer", stats, params, workspace, artifacts=output)
    return manifest
