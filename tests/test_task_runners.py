"""The corpus flow on a local Dask or Ray cluster writes exactly what the default thread runner writes."""

import pyarrow.parquet as pq
import pytest

from tinylm.config import CorpusConfig, ExtractConfig, RunnerConfig
from tinylm.flows.corpus import corpus_flow
from tinylm.storage.documents import corpus_parts


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
