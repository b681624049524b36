"""The whole pipeline on the real samples, through a real Prefect API and a real MLflow store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.sorting import ArtifactSort

from tests.helpers import tiny_train_config
from tinylm.config import CorpusConfig, EvalConfig, ExtractConfig, PipelineConfig, ShardsConfig, TokenizerConfig
from tinylm.corpus.wiki.markup import outside_formulas
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.pipeline import pipeline_flow
from tinylm.storage.documents import corpus_parts
from tinylm.tokens.shard_files import open_shards
from tinylm.tokens.tokenizer_files import load_tokenizer
from tinylm.tracking.store import use_experiment

pytestmark = pytest.mark.slow


def small_pipeline(workspace, inputs) -> PipelineConfig:
    return PipelineConfig(
        workspace=str(workspace),
        name="e2e",
        inputs=[str(path) for path in inputs],
        corpus=CorpusConfig(extract=ExtractConfig(text_mode="line")),
        tokenizer=TokenizerConfig(vocab_size=2000),
        shards=ShardsConfig(shard_tokens=1 << 17),
        train=tiny_train_config(max_shards=2, max_steps_per_shard=15),
    )


async def _artifacts() -> dict[str, object]:
    """The newest artifact of each key (the session's Prefect server holds other tests' too)."""
    async with get_client() as client:
        newest_first = await client.read_artifacts(sort=ArtifactSort.CREATED_DESC)
    latest: dict[str, object] = {}
    for artifact in newest_first:
        latest.setdefault(artifact.key, artifact)
    return latest


async def _subflow_names(parent_id) -> list[str]:
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )
        flows = {run.flow_id: (await client.read_flow(run.flow_id)).name for run in runs}
        assert all(run.state.is_completed() for run in runs)
        return sorted(flows[run.flow_id] for run in runs)


def test_pipeline_from_raw_dump_to_checkpoints(prefect_api, workspace, enwiki_dump, zuozhuan):
    config = small_pipeline(workspace, [enwiki_dump, zuozhuan]).model_copy(update={"eval": EvalConfig(max_tokens=5000)})
    state = pipeline_flow(config, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert asyncio.run(_subflow_names(state.state_details.flow_run_id)) == [
        "corpus",
        "eval",
        "shards",
        "tokenizer",
        "train",
    ]

    rows = pq.read_table(corpus_parts(result["corpus"])).to_pylist()
    index = json.loads((workspace / "dedup-index" / "index.json").read_text())
    assert sum(part["rows"] for part in index["parts"]) == len(rows)
    assert len(rows) == result["documents"] > 1000
    assert {row["lang"] for row in rows} == {"en", "zh"}
    assert not [
        row["title"] for row in rows if any(mark in outside_formulas(row["text"]) for mark in ("[[", "{{", "<ref"))
    ]

    tokenizer = load_tokenizer(result["tokenizer"])
    mixed = "郑伯克段于鄢。Anarchism is a political philosophy. 🙂"
    assert tokenizer.decode(tokenizer.encode(mixed).ids) == mixed

    shards = open_shards(result["shards"])
    on_disk = sum(path.stat().st_size for path in shards.directory.glob("shard-*.bin"))
    assert shards.manifest.total_tokens == on_disk // 2 == sum(len(a) for a in shards.arrays)
    assert all(a.dtype == np.uint16 for a in shards.arrays)

    client = MlflowClient()
    experiment = client.get_run(result["run_id"]).info.experiment_id
    (corpus_run,) = client.search_runs([experiment], "tags.`tinylm.stage` = 'corpus'")
    assert corpus_run.data.metrics["kept"] == len(rows) and "filtered.too_short" in corpus_run.data.metrics
    (tokenizer_run,) = client.search_runs([experiment], "tags.`tinylm.stage` = 'tokenizer'")
    assert tokenizer_run.data.metrics["vocab_size"] == 2000
    (shards_run,) = client.search_runs([experiment], "tags.`tinylm.stage` = 'shards'")
    (pipeline_run,) = client.search_runs([experiment], "tags.`tinylm.stage` = 'pipeline'")
    children = [corpus_run, tokenizer_run, shards_run, client.get_run(result["run_id"])]
    assert all(run.data.tags["mlflow.parentRunId"] == pipeline_run.info.run_id for run in children), (
        "nested under the pipeline"
    )
    assert pipeline_run.info.status == "FINISHED"
    for stage, run in (("corpus", corpus_run), ("tokenizer", tokenizer_run), ("shards", shards_run)):
        # The stage's run spans its work: every file the stage wrote was written while the run was open.
        written = [path.stat().st_mtime * 1000 for path in Path(result[stage]).rglob("*") if path.is_file()]
        assert written and run.info.start_time <= min(written) and max(written) <= run.info.end_time, stage
    assert pipeline_run.data.metrics["final_loss"] == pytest.approx(result["final_loss"])
    assert (
        pipeline_run.data.metrics["seconds.train"] == result["seconds"]["train"]
        and pipeline_run.data.metrics["tokens"] == result["tokens"]
    )
    assert (
        pipeline_run.data.params["tokenizer.vocab_size"] == "2000" and pipeline_run.data.tags["tinylm.reused"] == "none"
    )
    assert shards_run.data.metrics["total_tokens"] == result["tokens"]
    artifacts = asyncio.run(_artifacts())
    assert (
        corpus_run.info.run_id in artifacts["corpus-summary"].data
        and shards_run.info.run_id in artifacts["shards-summary"].data
    )
    assert result["run_id"] in artifacts["train-summary"].data
    assert artifacts["train-progress"].data == 100.0 and artifacts["corpus-stats"].type == "table"
    assert tokenizer_run.data.metrics["compression.zh.bytes_per_token"] > 1.5, (
        "merges pack several bytes of Chinese per token"
    )
    logged = {artifact.path for artifact in client.list_artifacts(tokenizer_run.info.run_id, "tokenizer")}
    assert {"tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"} <= logged
    run = client.get_run(result["run_id"])
    assert run.data.params["model.dim"] == "32" and run.data.params["max_shards"] == "2"
    losses = client.get_metric_history(result["run_id"], "loss")
    assert len(losses) == 30 and sorted(m.step for m in losses) == list(range(1, 31))
    assert losses[-1].value < losses[0].value
    checkpoints = client.list_artifacts(result["run_id"], "checkpoints")
    assert len(checkpoints) >= 2
    (scored,) = [row for row in result["eval"]["perplexity"] if row["group"] == "validation"]
    assert 0 < scored["tokens"] <= 5000 and scored["bits_per_byte"] > 0, (
        "the eval stage scores the pipeline's own held-out shards"
    )
    assert client.get_run(result["eval"]["run_id"]).data.tags["mlflow.parentRunId"] == result["run_id"]
    assert run.data.metrics["eval/shards/e2e/validation/perplexity"] == pytest.approx(scored["perplexity"])


def test_rerunning_a_finished_corpus_does_no_work(prefect_api, workspace, constitution):
    output = str(workspace / "corpus")
    first = corpus_flow([str(constitution)], output, CorpusConfig(), workspace=str(workspace))
    stamp = [(p.name, p.stat().st_mtime_ns) for p in corpus_parts(output)]
    second = corpus_flow([str(constitution)], output, CorpusConfig(), workspace=str(workspace))
    assert not first.pop("reused") and second.pop("reused")
    (made_by,) = MlflowClient().search_runs([use_experiment("tinylm", workspace)], "tags.`tinylm.stage` = 'corpus'")
    assert second.pop("reused_run") == first.pop("run_id") == made_by.info.run_id, (
        "the reused output names the run that made it"
    )
    assert second == first
    assert [(p.name, p.stat().st_mtime_ns) for p in corpus_parts(output)] == stamp


def test_a_truncated_input_fails_the_flow_with_its_name(prefect_api, workspace, enwiki_dump, tmp_path):
    cut = tmp_path / "enwiki-cut.xml.bz2"
    cut.write_bytes(enwiki_dump.read_bytes()[:500_000])
    state = corpus_flow([str(cut)], str(workspace / "corpus"), CorpusConfig(), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="enwiki-cut.xml.bz2"):
        state.result()
