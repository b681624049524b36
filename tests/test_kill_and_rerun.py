"""A stage killed with SIGKILL mid-write and run again ends exactly like one that never died."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.helpers import kill_when, make_shards
from tinylm.config import ExtractConfig, ShardsConfig, TokenizerConfig
from tinylm.corpus.extraction import ExtractUnit, extract_unit
from tinylm.storage.manifest import file_sha256, read_manifest
from tinylm.tokens.tokenizer import train_tokenizer

# Each test kills a subprocess mid-write.
pytestmark = pytest.mark.service


def test_extraction_killed_mid_write_then_rerun(enwiki_dump, tmp_path):
    unit = ExtractUnit(str(enwiki_dump), file_sha256(enwiki_dump))
    reference = extract_unit(unit, tmp_path / "reference", ExtractConfig())
    output = tmp_path / "killed"
    code = (
        "from tinylm.corpus.extraction import ExtractUnit, extract_unit; from tinylm.config import ExtractConfig; "
        f"extract_unit(ExtractUnit({str(enwiki_dump)!r}, {unit.content_hash!r}), {str(output)!r}, ExtractConfig())"
    )
    kill_when(code, lambda: output.exists() and any(output.glob(".*.tmp-*")))
    assert not any(output.glob("*.parquet")), "a killed writer must leave no file under a final name"
    rerun = extract_unit(unit, output, ExtractConfig())
    assert not rerun["reused"]
    assert pq.read_table(rerun["output"]).equals(pq.read_table(reference["output"]))
    assert not list(output.glob(".*.tmp-*")), "the rerun removes what the killed writer left"


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(lambda output: any(output.glob("_work/*/*.documents.parquet")), id="after-encoding-a-part"),
        pytest.param(lambda output: (output / "shard-00003.bin").exists(), id="after-some-shards"),
    ],
)
def test_shards_flow_killed_then_rerun(moment, prefect_api, bilingual_corpus, tmp_path):
    tokenizer = tmp_path / "tokenizer"
    train_tokenizer(bilingual_corpus, tokenizer, TokenizerConfig(vocab_size=600, max_text_bytes=200_000))
    config = ShardsConfig(shard_tokens=4096, batch_documents=64)
    reference = make_shards(bilingual_corpus, tokenizer, tmp_path / "reference", config)
    output = tmp_path / "killed"
    code = (
        "from tinylm.flows.shards import shards_flow; from tinylm.config import ShardsConfig; "
        f"shards_flow({str(bilingual_corpus)!r}, {str(tokenizer)!r}, {str(output)!r}, ShardsConfig(shard_tokens=4096, "
        "batch_documents=64))"
    )
    kill_when(code, lambda: moment(output), env={"PREFECT_API_URL": prefect_api})
    assert read_manifest(output) is None, "without a manifest the half-built shard set is not trusted"
    rerun = make_shards(bilingual_corpus, tokenizer, output, config)
    assert not rerun["reused"]
    shards = rerun["shards"] + rerun["validation"]["shards"]
    assert [s["sha256"] for s in shards] == [
        s["sha256"] for s in reference["shards"] + reference["validation"]["shards"]
    ]
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
