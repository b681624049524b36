"""pipeline flow: corpus, tokenizer, shards, train and (optionally) eval as subflows under one workspace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tinylm.config import EvalConfig, PipelineConfig
from tinylm.corpus.dedup.index import INDEX_FILE
from tinylm.evaluation.evaluate import headline
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.evaluate import eval_flow
from tinylm.flows.report import prefect_link_tags, run_name
from tinylm.flows.shards import shards_flow
from tinylm.flows.tokenizer import tokenizer_flow
from tinylm.flows.train import train_flow
from tinylm.storage.layout import run_checkpoints
from tinylm.storage.manifest import MANIFEST_NAME, fingerprint
from tinylm.storage.mirror import pull, push
from tinylm.tracking.groups import log_run_summary, run_group
from tinylm.tracking.store import run_link


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


def pipeline_settings(config: PipelineConfig) -> dict:
    """The config less how a run trains (restart, resume, verify): what a pipeline run is."""
    return config.model_dump(mode="json", exclude={"train": {"restart", "resume_run_id", "verify_shards"}})


def pipeline_key(config: PipelineConfig) -> str:
    """What makes two pipeline runs the same: the config (how it trains aside) and each input's size and
    modification time, cheap stand-ins for content that the corpus stage then hashes."""
    settings = pipeline_settings(config)
    stamps = {}
    for path in config.inputs:
        info = Path(path).stat() if Path(path).exists() else None
        stamps[path] = f"{info.st_size}:{info.st_mtime_ns}" if info else "missing"
    return fingerprint("pipeline", settings, stamps)


@flow(
    name="pipeline",
    description="Raw corpora to a trained model (corpus, tokenizer, shards, train, and eval when configured) under one "
    "workspace.",
    flow_run_name=run_name("pipeline", "config"),
)
def pipeline_flow(config: PipelineConfig = PipelineConfig()) -> dict:
    """Every stage in order, each a subflow that reuses its output when its inputs and settings are unchanged.

    Args:
        config: the workspace, the raw inputs and each stage's settings
    """
    corpus_dir, tokenizer_dir, shards_dir = (str(config.stage_dir(s)) for s in ("corpus", "tokenizers", "shards"))
    seconds: dict[str, float] = {}
    tags = {"tinylm.name": config.name} | prefect_link_tags()
    group = run_group(
        "pipeline", config.workspace, pipeline_key(config), config.train.experiment, tags, config.train.restart
    )
    with group as group_run:
        with (
            stopwatch(seconds, "corpus"),
            mirrored(config, corpus_dir),
            mirrored(config, config.index_dir(), INDEX_FILE),
        ):
            corpus = corpus_flow(
                config.inputs, corpus_dir, config.corpus_config(), config.index_dir(), config.workspace
            )
        with stopwatch(seconds, "tokenizer"), mirrored(config, tokenizer_dir):
            tokenizer = tokenizer_flow(corpus_dir, tokenizer_dir, config.tokenizer, config.workspace)
        with stopwatch(seconds, "shards"), mirrored(config, shards_dir):
            shards = shards_flow(corpus_dir, tokenizer_dir, shards_dir, config.shards, config.workspace)
        with stopwatch(seconds, "train"):
            trained = train_flow(shards_dir, config.train, config.workspace)
        evaluated = None
        if config.eval is not None:
            with stopwatch(seconds, "eval"):
                evaluated = eval_flow(trained["run_id"], pipeline_eval(config), config.workspace)
        result = {
            "seconds": seconds,
            "corpus": corpus_dir,
            "documents": corpus["stats"]["kept"],
            "tokenizer": tokenizer_dir,
            "vocab_size": tokenizer["vocab_size"],
            "shards": shards_dir,
            "tokens": shards["total_tokens"],
            **trained,
        }
        stages = {"corpus": corpus, "tokenizer": tokenizer, "shards": shards, "train": trained}
        if evaluated is not None:
            result["eval"] = {
                "run_id": evaluated["run_id"],
                "perplexity": evaluated["perplexity"],
                "benchmarks": evaluated["benchmarks"],
            }
            stages["eval"] = evaluated
        record_pipeline_run(group_run, config, result, stages)
    publish_pipeline_summary(group_run, config, result, stages)
    return result


def pipeline_eval(config: PipelineConfig) -> EvalConfig:
    """The eval stage's settings: perplexity on the validation split of the pipeline's own shards first (the
    number every run of this pipeline shares), then on the data the eval section names."""
    shards = str(config.stage_dir("shards"))
    data = [shards, *(path for path in config.eval.perplexity_data if path != shards)]
    return config.eval.model_copy(update={"perplexity_data": data, "experiment": config.train.experiment})


def publish_pipeline_summary(run_id: str, config: PipelineConfig, result: dict, stages: dict[str, dict]) -> None:
    """The pipeline's page in the Prefect UI: every stage with its time, what it made, whether it was reused, and a
    link to its MLflow run; then the model and how to use it."""
    workspace = config.workspace
    made = {
        "corpus": f"{result['documents']:,} documents kept",
        "tokenizer": f"vocabulary {result['vocab_size']:,}",
        "shards": f"{result['tokens']:,} tokens in {len(stages['shards'].get('shards', []))} shards",
        "train": f"final loss {result['final_loss']:.4f} after {stages['train'].get('steps', 0)} steps",
    }
    if "eval" in stages:
        made["eval"] = "; ".join(headline(stages["eval"])) or "no figures"
    rows = []
    for stage, done in stages.items():
        stage_run = done.get("reused_run") or done.get("run_id")
        link = run_link(workspace, stage_run) if stage_run else "(made before it was tracked)"
        reused = "reused " if done.get("reused") else ""
        rows.append(f"| {stage} | {result['seconds'].get(stage, 0):.1f} | {reused}{link} | {made[stage]} |")
    model = result["run_id"]
    checkpoints = run_checkpoints(Path(workspace).resolve(), model)
    markdown = "\n".join(
        [
            f"**pipeline** `{config.name}` finished in {sum(result['seconds'].values()):.0f} s: final loss "
            f"{result['final_loss']:.4f}. Pipeline run {run_link(workspace, run_id)}.",
            "",
            "| stage | seconds | MLflow run | made |",
            "|---|---|---|---|",
            *rows,
            "",
            f"**The model**: training run {run_link(workspace, model)}, checkpoints in `{checkpoints}`. "
            f"Chat with it: `tinylm serve --model {model} --workspace {workspace}`; "
            f"export it: `tinylm export --checkpoint {model} --output hf-{config.name} --workspace {workspace}`.",
        ]
    )
    create_markdown_artifact(key="pipeline-summary", markdown=markdown, description="pipeline summary")


def record_pipeline_run(run_id: str, config: PipelineConfig, result: dict, stages: dict[str, dict]) -> None:
    """The pipeline's MLflow run: the whole config as params; each stage's seconds, the documents, tokens and
    final loss as metrics; and which stages reused an earlier run's output (`tinylm.reused`)."""
    reused = [
        f"{stage} ({done.get('reused_run') or done.get('run_id') or 'from before'})"
        for stage, done in stages.items()
        if done.get("reused")
    ]
    metrics = {f"seconds.{stage}": value for stage, value in result["seconds"].items()}
    metrics |= {key: result[key] for key in ("documents", "vocab_size", "tokens", "final_loss")}
    log_run_summary(run_id, pipeline_settings(config), metrics, {"tinylm.reused": ", ".join(reused) or "none"})
