import numpy as np
import pytest

from tinylm.config import ShardsConfig, TokenizerConfig
from tinylm.storage.documents import corpus_parts, iter_texts
from tinylm.storage.shards import ShardWriter, open_shards, token_dtype
from tinylm.tasks.shards import build_shards
from tinylm.tasks.tokenizer import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def built(small_corpus, tmp_path_factory):
    tokenizer_dir = tmp_path_factory.mktemp("tok")
    train_tokenizer(small_corpus, tokenizer_dir, TokenizerConfig(vocab_size=800))
    output = tmp_path_factory.mktemp("shards")
    manifest = build_shards(small_corpus, tokenizer_dir, output, ShardsConfig(shard_tokens=4096))
    return tokenizer_dir, output, manifest


def test_shards_hold_every_document_followed_by_eos(built, small_corpus):
    tokenizer_dir, output, manifest = built
    shards = open_shards(output, verify_checksums=True)
    stream = np.concatenate([np.asarray(a) for a in shards.arrays])
    assert len(stream) == manifest["total_tokens"] == sum(s["tokens"] for s in manifest["shards"])
    assert sum((output / s["file"]).stat().st_size for s in manifest["shards"]) == manifest["total_tokens"] * 2
    assert all(s["tokens"] == 4096 for s in manifest["shards"][:-1]) and len(manifest["shards"]) > 2
    assert int((stream == manifest["eos_id"]).sum()) == manifest["documents"] == sum(s["documents"] for s in manifest["shards"])
    first_document = stream[: int(np.argmax(stream == manifest["eos_id"]))]
    corpus_first = next(iter_texts(corpus_parts(small_corpus)))
    assert load_tokenizer(tokenizer_dir).decode(first_document.tolist()) == corpus_first
    assert set(manifest["shards"][0]["sources"]) == {"us-constitution-zhs"}


def test_same_inputs_give_byte_identical_shards(built, small_corpus, tmp_path):
    tokenizer_dir, output, manifest = built
    again = build_shards(small_corpus, tokenizer_dir, tmp_path, ShardsConfig(shard_tokens=4096))
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in manifest["shards"]]


def test_a_truncated_shard_is_refused_with_its_name(built, tmp_path):
    _, output, manifest = built
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in output.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    victim = copy / manifest["shards"][1]["file"]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(ValueError, match=str(victim)):
        open_shards(copy)


def test_writer_splits_a_document_longer_than_a_shard(tmp_path):
    writer = ShardWriter(tmp_path, shard_tokens=10, dtype=token_dtype(100))
    writer.add(np.arange(25), "long")
    writer.add(np.arange(3), "short")
    shards = writer.close()
    assert [s["tokens"] for s in shards] == [10, 10, 8]
    assert [s["documents"] for s in shards] == [0, 0, 2]
    assert shards[2]["sources"] == {"long": 5, "short": 3}
    data = np.concatenate([np.fromfile(tmp_path / s["file"], dtype="<u2") for s in shards])
    assert data.tolist() == list(range(25)) + [0, 1, 2]


def test_dtype_widens_past_65536_ids():
    assert token_dtype(6400) == np.dtype("<u2") and token_dtype(65536) == np.dtype("<u2")
    assert token_dtype(65537) == np.dtype("<u4")
