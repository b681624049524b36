import bz2
import dataclasses
import json

import pyarrow.parquet as pq
import pytest

from tests.multistream import write_multistream
from tinylm.config import ExtractConfig
from tinylm.corpus.extraction import extract_unit, plan_units
from tinylm.corpus.readers.base import TruncatedInputError
from tinylm.corpus.wiki.multistream import index_for, plan_ranges, stream_offsets
from tinylm.flows.extract import run_extract
from tinylm.storage.manifest import content_hashes, file_sha256


@pytest.fixture(scope="module")
def multistream(enwiki_dump, tmp_path_factory):
    """The real sample re-packed as Wikimedia does: streams of 100 pages plus an index."""
    dump = tmp_path_factory.mktemp("ms") / "enwiki-sample-pages-articles-multistream.xml.bz2"
    with bz2.open(enwiki_dump) as source:
        write_multistream(source, dump, pages_per_stream=100)
    return dump


def _documents(manifest, output):
    rows = [row for name in manifest.files for row in pq.read_table(output / name).to_pylist()]
    return sorted(rows, key=lambda row: row["id"])


def test_multistream_index_lists_streams_of_100_pages(multistream, enwiki_dump):
    index = index_for(multistream)
    assert index is not None and index.name == "enwiki-sample-pages-articles-multistream-index.txt.bz2"
    offsets = stream_offsets(index)
    assert len(offsets) == 3
    with bz2.open(index) as lines:
        assert sum(1 for _ in lines) == 206
    assert bz2.open(multistream).read() == bz2.open(enwiki_dump).read()


def _spans(ranges):
    return [(r.start, r.end) for r in ranges]


def test_ranges_cover_whole_streams():
    assert _spans(plan_ranges([10, 20, 30, 40], 50, 1)) == [(10, 20), (20, 30), (30, 40), (40, 50)]
    assert _spans(plan_ranges([10, 20, 30, 40], 50, 15)) == [(10, 30), (30, 50)]
    assert _spans(plan_ranges([10, 20], 50, 10**9)) == [(10, 50)]


def test_parallel_ranges_equal_the_serial_extraction(prefect_api, enwiki_dump, multistream, tmp_path):
    serial = run_extract([str(enwiki_dump)], str(tmp_path / "serial"), ExtractConfig(workers=1))
    parallel = run_extract([str(multistream)], str(tmp_path / "parallel"), ExtractConfig(workers=2, range_bytes=1))
    assert len(serial.files) == 1 and len(parallel.files) == 3
    assert parallel.stats["documents"] == serial.stats["documents"] == 98
    assert parallel.stats["skipped"] == serial.stats["skipped"]
    assert _documents(parallel, tmp_path / "parallel") == _documents(serial, tmp_path / "serial")
    again = run_extract([str(enwiki_dump)], str(tmp_path / "serial"), ExtractConfig(workers=1))
    assert json.dumps(again.fields()) == json.dumps(serial.fields()), (
        "a rerun that finds the stage done returns what the first run did, key order included"
    )


def test_an_index_given_as_an_input_pairs_with_its_dump(multistream, tmp_path):
    index = index_for(multistream)
    inputs = [str(multistream), str(index)]
    units = plan_units(inputs, content_hashes(inputs), ExtractConfig(range_bytes=1))
    assert [(u.path, u.start is not None) for u in units] == [(str(multistream), True)] * 3
    with pytest.raises(ValueError, match="without its dump"):
        plan_units([str(index)], content_hashes([str(index)]), ExtractConfig())


def test_a_range_cut_inside_a_stream_is_reported(multistream, tmp_path):
    second = plan_units([str(multistream)], content_hashes([str(multistream)]), ExtractConfig(range_bytes=1))[1]
    cut = tmp_path / "enwiki-cut-multistream.xml.bz2"
    cut.write_bytes(multistream.read_bytes()[: second.start + 5000])
    unit = dataclasses.replace(second, path=str(cut), content_hash=file_sha256(cut))
    with pytest.raises(TruncatedInputError, match="enwiki-cut-multistream.xml.bz2"):
        extract_unit(unit, tmp_path / "out", ExtractConfig())
