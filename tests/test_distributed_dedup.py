"""Dedup spread over workers decides exactly what the single-host run decides: same parts, rejected files, counts
and index, on thousands of real lines with planted copies and near copies."""

import random

import pyarrow.parquet as pq
import pytest

from tests.helpers import planted_near_duplicates
from tinylm.config import DedupConfig
from tinylm.corpus.dedup.deduplicate import SCRATCH, deduplicate_files
from tinylm.corpus.dedup.index import DedupIndex
from tinylm.corpus.dedup.staged import deduplicate_in_stages
from tinylm.storage.documents import write_documents


def in_order(function, calls):
    """A FanOut that runs each call here, in reverse order: results must not depend on which runs first."""
    results = {number: function(*call) for number, call in reversed(list(enumerate(calls)))}
    return [results[number] for number in range(len(calls))]


def split(documents: list[dict], directory, sizes: list[int]) -> list[str]:
    """The documents over files of the given sizes (an empty one among them), in order."""
    directory.mkdir(parents=True, exist_ok=True)
    files, start = [], 0
    for number, size in enumerate(sizes):
        path = directory / f"{number}.parquet"
        write_documents(path, documents[start : start + size])
        files.append(str(path))
        start += size
    assert start == len(documents)
    return files


def assert_same_output(single, spread, stats_single, stats_spread):
    assert stats_spread == stats_single
    assert not (spread / SCRATCH).exists()
    names = sorted(path.relative_to(single) for path in single.rglob("*.parquet"))
    assert names == sorted(path.relative_to(spread) for path in spread.rglob("*.parquet"))
    for name in names:
        assert pq.read_table(spread / name).equals(pq.read_table(single / name)), name


@pytest.fixture(scope="module")
def planted(zuozhuan):
    documents = planted_near_duplicates(zuozhuan, originals=1500, copies=900, seed=3)
    return documents, [700, 0, 1100, 250, len(documents) - 2050]


@pytest.mark.parametrize(
    "config",
    [DedupConfig(), DedupConfig(near=False), DedupConfig(exact=False), DedupConfig(verify=False, threshold=0.7)],
    ids=["exact-and-near", "exact-only", "near-only", "unverified"],
)
def test_spread_over_workers_equals_one_host(planted, config, tmp_path):
    documents, sizes = planted
    files = split(documents, tmp_path / "in", sizes)
    single = deduplicate_files(files, tmp_path / "single", config, rejected_dir=tmp_path / "single" / "rejected")
    spread = deduplicate_in_stages(
        files, str(tmp_path / "spread"), config, in_order, rejected_dir=str(tmp_path / "spread" / "rejected")
    )
    assert single["rejected"].keys() == spread["rejected"].keys()
    assert_same_output(
        tmp_path / "single",
        tmp_path / "spread",
        {k: v for k, v in single.items() if k != "rejected"},
        {k: v for k, v in spread.items() if k != "rejected"},
    )
    if config.exact:
        assert single["exact_duplicates"] > 250
    if config.near:
        assert single["near_duplicates"] > 100


def test_a_second_corpus_meets_the_index_the_same_way(planted, tmp_path):
    documents, sizes = planted
    rng = random.Random(5)
    first, second = documents[:1200], documents[1200:] + rng.sample(documents[:1200], 300)
    for way in ("single", "spread"):
        index = tmp_path / way / "index"
        for month, corpus in (("jan", first), ("feb", second)):
            files = split(corpus, tmp_path / way / f"{month}-in", [len(corpus) // 3, len(corpus) - len(corpus) // 3])
            output = tmp_path / way / month
            if way == "single":
                stats = deduplicate_files(files, output, DedupConfig(), index, month, output / "rejected")
            else:
                stats = deduplicate_in_stages(
                    files, str(output), DedupConfig(), in_order, str(index), month, str(output / "rejected")
                )
            (tmp_path / way / f"{month}.stats").write_text(repr(stats))
    for month in ("jan", "feb"):
        assert_same_output(
            tmp_path / "single" / month,
            tmp_path / "spread" / month,
            (tmp_path / "single" / f"{month}.stats").read_text(),
            (tmp_path / "spread" / f"{month}.stats").read_text().replace("spread", "single"),
        )
    feb = eval((tmp_path / "single" / "feb.stats").read_text())
    assert feb["exact_duplicates"] > 200 and feb["near_duplicates_of_index"] > 10
    indexes = [DedupIndex(tmp_path / way / "index", DedupConfig()) for way in ("single", "spread")]
    for single_part, spread_part in zip(*(list(index.parts()) for index in indexes), strict=True):
        assert single_part.ids == spread_part.ids and single_part.exact_keys == spread_part.exact_keys
        assert (single_part.signatures == spread_part.signatures).all()
