"""shards flow: encode corpus parts in parallel task runs, then mix them into token shards with a manifest.

On threads, as many parts are encoded at once as there are CPUs (the tokenizer's own threads use
them all): each encode holds a batch's ids, and Prefect's default pool ran every part at once, so
memory grew with the number of parts (2.5 GB for 405 MB of text, measured by bench/scale.py).
On Dask or Ray (`config.runner`) each part is encoded on a worker, which reads the corpus and
tokenizer and writes its ids on the shared filesystem; the mix runs in the flow's process.
"""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ShardsConfig
from tinylm.flows.report import StageProgress, report_reused, report_stage, run_name
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.flows.runners import task_runner
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tokens.shards import EncodedPart, ShardJob, encode_job_part, mix_shards, plan_shards

encode_part_task = task(encode_job_part, name="encode-part", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
mix_shards_task = task(mix_shards, name="mix-shards", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)


@flow(
    name="shards",
    description="Tokenize a corpus into fixed-size token shards with a manifest.",
    flow_run_name=run_name("shards", "output"),
)
def shards_flow(
    corpus: str = "workspace/corpus/default",
    tokenizer: str = "workspace/tokenizers/default",
    output: str = "workspace/shards/default",
    config: ShardsConfig = ShardsConfig(),
    workspace: str = "workspace",
) -> dict:
    """Training and validation shards of `corpus` encoded with `tokenizer`; an identical earlier run is reused.
    The stats go to an MLflow run in `workspace`'s store (or MLFLOW_TRACKING_URI).

    Args:
        corpus: directory of a corpus (relative: to where the serving process started)
        tokenizer: directory of a tokenizer
        output: directory of the shards and their manifest
        config: shard size, mixing and validation split
        workspace: home of the MLflow store (relative: to where the serving process started)
    """
    started = time.time()
    job = plan_shards(corpus, tokenizer, output, config)
    if (done := job.finished()) is not None:
        return done.fields() | report_reused("shards", output, workspace)
    encoded = encode_parts_flow.with_options(task_runner=task_runner(config.runner, 0))(job)
    manifest = mix_shards_task(job, encoded)
    run_id = report_stage(
        "shards",
        shard_stats(manifest),
        {"corpus": corpus, "tokenizer": tokenizer, "output": output, **config.model_dump(mode="json")},
        workspace,
        started,
    )
    return manifest.fields() | {"reused": False, "run_id": run_id}


@flow(name="encode-parts", flow_run_name=run_name("encode-parts"))
def encode_parts_flow(job: ShardJob) -> list[EncodedPart]:
    """Every corpus part encoded in its own task run, on the runner the shards config names."""
    progress = StageProgress("shards", "corpus parts encoded, in percent")
    futures = [encode_part_task.submit(job, part) for part in job.parts]
    encoded = []
    for future in futures:
        encoded.append(future.result())
        progress(len(encoded) / len(futures))
    return encoded


def shard_stats(manifest: ShardsManifest) -> dict:
    return {
        "shards": len(manifest.shards),
        "total_tokens": manifest.total_tokens,
        "documents": manifest.documents,
        "validation": manifest.validation.model_dump(include={"total_tokens", "documents"}),
        "sources": manifest.sources,
    }
