"""tokenizer flow: train byte-level BPE on a corpus."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import TokenizerConfig
from tinylm.flows.report import publish_stats, report_reused, report_stage, run_name
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.storage.manifest import finished_output
from tinylm.tokens.tokenizer import tokenizer_fingerprint, train_tokenizer
from tinylm.tokens.tokenizer_files import TokenizerManifest

train_tokenizer_task = task(train_tokenizer, name="train-tokenizer", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)


@flow(
    name="tokenizer",
    description="Train a byte-level BPE tokenizer on a corpus.",
    flow_run_name=run_name("tokenizer", "output"),
)
def tokenizer_flow(
    corpus: str = "workspace/corpus/default",
    output: str = "workspace/tokenizers/default",
    config: TokenizerConfig = TokenizerConfig(),
    workspace: str = "workspace",
) -> dict:
    """Train (or reuse) the tokenizer; its files, sample sizes and held-out compression go to MLflow.

    Args:
        corpus: directory of a corpus (the corpus flow's output) (relative: to where the serving process started)
        output: directory of the tokenizer files
        config: vocabulary size and sample
        workspace: home of the MLflow store (relative: to where the serving process started)
    """
    started = time.time()
    if (done := finished_output(output, tokenizer_fingerprint(corpus, config), TokenizerManifest)) is not None:
        publish_stats("tokenizer", _stats(done))
        return done.fields() | report_reused("tokenizer", output, workspace)
    manifest = train_tokenizer_task(corpus, output, config)
    params = {"corpus": corpus, "output": output, **config.model_dump(mode="json")}
    run_id = report_stage("tokenizer", _stats(manifest), params, workspace, started, artifacts=output)
    return manifest.fields() | {"reused": False, "run_id": run_id}


def _stats(manifest: TokenizerManifest) -> dict:
    return manifest.model_dump(include={"vocab_size", "sample", "compression", "memory", "train_seconds"})
