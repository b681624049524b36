"""The corpus flow on a local Dask cluster writes exactly what the default thread runner writes."""

import pyarrow.parquet as pq
import pytest

from tinylm.config import CorpusConfig, ExtractConfig, RunnerConfig
from tinylm.flows.corpus import corpus_flow
from tinylm.storage.documents import corpus_parts

pytest.importorskip("prefect_dask", reason="prefect-dask is a dev dependency")


@pytest.mark.slow
def test_corpus_on_dask_equals_corpus_on_threads(prefect_api, constitution, table_dump, zuozhuan, workspace, tmp_path):
    inputs = [str(constitution), str(table_dump), str(zuozhuan)]
    settings = {"extract": ExtractConfig(text_mode="line", workers=2)}
    threads = corpus_flow(inputs, str(tmp_path / "threads"), CorpusConfig(**settings), None, str(workspace))
    dask = corpus_flow(inputs, str(tmp_path / "dask"), CorpusConfig(runner=RunnerConfig(kind="dask"), **settings), None, str(workspace))
    assert dask["fingerprint"] == threads["fingerprint"], "where tasks run is not part of what they compute"
    assert dask["stats"] == threads["stats"] and dask["stats"]["kept"] > 1000
    ours, theirs = corpus_parts(tmp_path / "dask"), corpus_parts(tmp_path / "threads")
    assert [p.name for p in ours] == [p.name for p in theirs]
    assert all(pq.read_table(a).equals(pq.read_table(b)) for a, b in zip(ours, theirs))
