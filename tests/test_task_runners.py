"""The corpus, dedup, shards and chat-data flows on a local Dask or Ray cluster write exactly what the default thread
runner writes."""

import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import TESTS_DATA
from tests.helpers import make_chat_data, make_shards, planted_near_duplicates
from tinylm.config import (
    ChatDataConfig,
    CorpusConfig,
    DedupConfig,
    ExtractConfig,
    RunnerConfig,
    ShardsConfig,
    TokenizerConfig,
)
from tinylm.corpus.dedup.index import DedupIndex
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.dedup import dedup_flow
from tinylm.storage.documents import corpus_parts, write_documents
from tinylm.tokens.tokenizer import train_tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("kind, package", [("dask", "prefect_dask"), ("ray", "prefect_ray")])
def test_corpus_on_a_cluster_equals_corpus_on_threads(
    kind, package, prefect_api, constitution, table_dump, zuozhuan, workspace, tmp_path
):
    pytest.importorskip(package, reason=f"{package} is a dev dependency")
    inputs = [str(constitution), str(table_dump), str(zuozhuan)]
    settings = {"extract": ExtractConfig(text_mode="line", workers=2)}
    threads = corpus_flow(inputs, str(tmp_path / "threads"), CorpusConfig(**settings), None, str(workspace))
    cluster = corpus_flow(
        inputs, str(tmp_path / kind), CorpusConfig(runner=RunnerConfig(kind=kind), **settings), None, str(workspace)
    )
    assert cluster["fingerprint"] == threads["fingerprint"], "where tasks run is not part of what they compute"
    assert cluster["stats"] == threads["stats"] and cluster["stats"]["kept"] > 1000
    ours, theirs = corpus_parts(tmp_path / kind), corpus_parts(tmp_path / "threads")
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert all(pq.read_table(a).equals(pq.read_table(b)) for a, b in zip(ours, theirs))


@pytest.mark.slow
@pytest.mark.parametrize("kind, package", [("dask", "prefect_dask"), ("ray", "prefect_ray")])
def test_dedup_spread_over_a_cluster_equals_dedup_on_threads(kind, package, prefect_api, zuozhuan, workspace, tmp_path):
    """Near-dedup as task runs on a local cluster of two worker processes, against a persistent index that the
    second corpus meets: the same parts, rejected documents, counts and index as the single-host run."""
    pytest.importorskip(package, reason=f"{package} is a dev dependency")
    documents = planted_near_duplicates(zuozhuan, originals=1500, copies=900, seed=3)
    months = {"jan": documents[:1400], "feb": documents[1400:] + documents[:300]}
    for runner in ("threads", kind):
        config = CorpusConfig(runner=RunnerConfig(kind=runner), extract=ExtractConfig(workers=2), keep_rejected=True)
        for month, corpus in months.items():
            inputs = tmp_path / runner / f"{month}-in"
            inputs.mkdir(parents=True)
            for number, start in enumerate(range(0, len(corpus), 500)):
                write_documents(inputs / f"{number}.parquet", corpus[start : start + 500])
            dedup_flow(
                str(inputs), str(tmp_path / runner / month), config, str(tmp_path / runner / "index"), str(workspace)
            )
    for month in months:
        manifests = (tmp_path / way / month / "manifest.json" for way in ("threads", kind))
        threads, spread = (json.loads(path.read_text()) for path in manifests)
        assert spread["stats"] == threads["stats"]
        assert spread["stats"]["near_duplicates"] > 10
    assert threads["stats"]["near_duplicates_of_index"] > 10 and threads["stats"]["exact_duplicates"] > 300
    for path in sorted((tmp_path / "threads").rglob("*.parquet")):
        if not path.parent.name.endswith("-in") and path.parent.name != "index":
            assert pq.read_table(path).equals(pq.read_table(tmp_path / kind / path.relative_to(tmp_path / "threads")))
    indexes = [DedupIndex(tmp_path / way / "index", DedupConfig()) for way in ("threads", kind)]
    for threads_part, spread_part in zip(*(list(index.parts()) for index in indexes), strict=True):
        assert threads_part.ids == spread_part.ids and (threads_part.signatures == spread_part.signatures).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind, package", [("dask", "prefect_dask"), ("ray", "prefect_ray")])
def test_shards_and_chat_data_on_a_cluster_equal_threads(kind, package, prefect_api, bilingual_corpus, tmp_path):
    """Corpus parts and chat files encoded on a local cluster's workers give the bytes the flow's own threads give."""
    pytest.importorskip(package, reason=f"{package} is a dev dependency")
    tokenizer = tmp_path / "tokenizer"
    train_tokenizer(bilingual_corpus, tokenizer, TokenizerConfig(vocab_size=800, max_text_bytes=300_000))
    chat_files = [
        TESTS_DATA / "minimind" / "sft_data.jsonl",
        TESTS_DATA / "llamafactory" / "alpaca_zh_demo.json",
        TESTS_DATA / "llamafactory" / "glaive_toolcall_zh_demo.json",
    ]
    for runner in ("threads", kind):
        where, output = RunnerConfig(kind=runner), tmp_path / runner
        make_shards(bilingual_corpus, tokenizer, output / "shards", ShardsConfig(runner=where, shard_tokens=50_000))
        make_chat_data(chat_files, tokenizer, output / "sft", ChatDataConfig(runner=where, max_seq_len=1024))
    for stage in ("shards", "sft"):
        manifests = (tmp_path / way / stage / "manifest.json" for way in ("threads", kind))
        threads, spread = (json.loads(path.read_text()) for path in manifests)
        assert {**spread, "config": None} == {**threads, "config": None}, "only the runner setting may differ"
        written = [path.relative_to(tmp_path / "threads") for path in (tmp_path / "threads" / stage).rglob("*.bin")]
        assert len(written) > 3
        for path in written:
            assert (tmp_path / kind / path).read_bytes() == (tmp_path / "threads" / path).read_bytes(), path
