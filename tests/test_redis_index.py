"""The dedup index in Redis (datasketch's Redis storage), against a real redis-server the fixture runs."""

import shutil
import subprocess
import time

import pytest
import redis

from tests.helpers import edited, free_port
from tinylm.config import DedupConfig
from tinylm.corpus.dedup.deduplicate import EmptyCorpusError, deduplicate_files
from tinylm.storage.documents import make_document, write_documents


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's)")
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def paragraphs(zuozhuan):
    return [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 400][:20]


def test_corpora_deduplicate_against_redis_across_machines(paragraphs, redis_url, tmp_path):
    config = DedupConfig(lsh_storage="redis", redis_url=redis_url)
    january = [make_document("jan", i, text, lang="zh") for i, text in enumerate(paragraphs[:10])]
    february = [
        make_document("feb", "copy", paragraphs[0], lang="zh"),
        make_document("feb", "near", edited(paragraphs[3], 0.005, seed=2), lang="zh"),
        *[make_document("feb", i, text, lang="zh") for i, text in enumerate(paragraphs[10:15])],
    ]
    write_documents(tmp_path / "jan.parquet", january)
    write_documents(tmp_path / "feb.parquet", february)
    first = deduplicate_files([tmp_path / "jan.parquet"], tmp_path / "jan", config, tmp_path / "index", "run-jan")
    second = deduplicate_files([tmp_path / "feb.parquet"], tmp_path / "feb", config, tmp_path / "index", "run-feb")
    assert first["kept"] == 10
    assert second["exact_duplicates"] == 1 and second["near_duplicates_of_index"] == 1 and second["kept"] == 5

    redone = deduplicate_files([tmp_path / "feb.parquet"], tmp_path / "feb-again", config, None, "run-feb")
    assert redone["kept"] == 5, "a run being redone must not drop its own documents"
    with pytest.raises(EmptyCorpusError, match="6 of 7 as exact_duplicate of the dedup index"):
        deduplicate_files([tmp_path / "feb.parquet"], tmp_path / "elsewhere", config, None, "run-other")
    elsewhere = deduplicate_files(
        [tmp_path / "feb.parquet"], tmp_path / "elsewhere", config, None, "run-other", allow_empty=True
    )
    assert elsewhere["kept"] == 0 and elsewhere["exact_duplicates"] == 6 and elsewhere["near_duplicates_of_index"] == 1


def test_a_corpus_made_again_replaces_its_entries_in_redis(paragraphs, redis_url, tmp_path):
    config = DedupConfig(lsh_storage="redis", redis_url=redis_url, redis_prefix="rerun")
    write_documents(tmp_path / "a.parquet", [make_document("a", i, t, lang="zh") for i, t in enumerate(paragraphs[:6])])
    write_documents(tmp_path / "b.parquet", [make_document("b", i, t, lang="zh") for i, t in enumerate(paragraphs[:8])])
    assert deduplicate_files([tmp_path / "a.parquet"], tmp_path / "v1", config, None, "corpus/a")["kept"] == 6
    # Made again from other files: its own six entries are no duplicates, and they are replaced by these eight.
    assert deduplicate_files([tmp_path / "b.parquet"], tmp_path / "v2", config, None, "corpus/a")["kept"] == 8
    client = redis.Redis.from_url(redis_url)
    assert client.hlen("rerun:added_by") == 8 and client.hlen("rerun:exact") == 8
    elsewhere = deduplicate_files(
        [tmp_path / "b.parquet"], tmp_path / "other", config, None, "corpus/other", allow_empty=True
    )
    assert elsewhere["exact_duplicates_of_index"] == 8


def test_redis_down_is_a_clear_error(paragraphs, tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    write_documents(tmp_path / "docs.parquet", [make_document("x", 1, paragraphs[0], lang="zh")])
    with pytest.raises(ConnectionError, match=url):
        deduplicate_files(
            [tmp_path / "docs.parquet"], tmp_path / "out", DedupConfig(lsh_storage="redis", redis_url=url)
        )
