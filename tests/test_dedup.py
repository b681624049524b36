import json

import pyarrow.parquet as pq
import pytest
from datasketch import LeanMinHash, MinHashLSH

from tests.helpers import edited, planted_near_duplicates
from tinylm.config import DedupConfig
from tinylm.corpus.dedup.deduplicate import SCRATCH, EmptyCorpusError, deduplicate_files, exact_key
from tinylm.corpus.dedup.index import CorpusKey, CorruptIndexError, DedupIndex
from tinylm.corpus.dedup.minhash import MinHasher, shingles
from tinylm.storage.documents import make_document, write_documents


def jaccard(first: str, second: str) -> float:
    a, b = set(shingles(first, "zh", 5)), set(shingles(second, "zh", 5))
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def paragraphs(zuozhuan):
    return [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 400][:30]


def kept_ids(directory) -> list[str]:
    return [row["id"] for part in sorted(directory.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]


def write(path, documents):
    write_documents(path, documents)
    return path


def test_exact_key_ignores_case_and_whitespace():
    assert exact_key("Hello   World\n") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello world!")


def test_exact_duplicates_keep_the_first_and_clusters_keep_the_longest(paragraphs, tmp_path):
    base = [make_document("zz", i, text, lang="zh") for i, text in enumerate(paragraphs[:20])]
    longer = edited(paragraphs[1], 0.005, seed=1) + "此段更长。"
    assert jaccard(paragraphs[1], longer) > 0.9
    copy = make_document("zz", "copy", paragraphs[0] + "  ", lang="zh")
    near = make_document("zz", "near", longer, lang="zh")
    first = write(tmp_path / "a.parquet", base[:10])
    second = write(tmp_path / "b.parquet", [*base[10:], copy, near])
    stats = deduplicate_files([first, second], tmp_path / "out", DedupConfig())
    assert stats["exact_duplicates"] == 1 and stats["near_duplicates"] == 1
    assert stats["near_duplicate_clusters"] == {"2": 1}
    expected = [d["id"] for d in base if d["id"] != base[1]["id"]] + [near["id"]]
    assert kept_ids(tmp_path / "out") == expected


def test_ties_go_to_the_smallest_id(paragraphs, tmp_path):
    twins = [
        make_document("zz", name, edited(paragraphs[2], 0.004, seed=seed), lang="zh") for seed, name in enumerate("abc")
    ]
    stats = deduplicate_files([write(tmp_path / "t.parquet", twins)], tmp_path / "out", DedupConfig(exact=False))
    assert stats["kept"] == 1 and kept_ids(tmp_path / "out") == [min(d["id"] for d in twins)]


def test_english_near_duplicates_use_word_shingles(tmp_path):
    text = (
        " ".join(["Anarchism is a political philosophy that advocates self-governed societies"] * 3)
        + " based on voluntary institutions and free association of individuals."
    )
    documents = [
        make_document("en", 1, text, lang="en"),
        make_document("en", 2, text.replace("voluntary", "Voluntary"), lang="en"),
        make_document(
            "en", 3, "A completely different sentence about the history of the printing press in Europe.", lang="en"
        ),
    ]
    stats = deduplicate_files([write(tmp_path / "en.parquet", documents)], tmp_path / "out", DedupConfig(exact=False))
    assert stats["near_duplicates"] == 1 and stats["kept"] == 2


def test_a_later_corpus_is_deduplicated_against_the_index(paragraphs, tmp_path):
    index = tmp_path / "index"
    january = [make_document("jan", i, text, lang="zh") for i, text in enumerate(paragraphs[:10])]
    february = [
        make_document("feb", "copy", paragraphs[0], lang="zh"),
        make_document("feb", "near", edited(paragraphs[3], 0.005, seed=2), lang="zh"),
        *[make_document("feb", i, text, lang="zh") for i, text in enumerate(paragraphs[10:15])],
    ]
    first = deduplicate_files(
        [write(tmp_path / "jan.parquet", january)], tmp_path / "jan", DedupConfig(), index, "run-jan"
    )
    second = deduplicate_files(
        [write(tmp_path / "feb.parquet", february)], tmp_path / "feb", DedupConfig(), index, "run-feb"
    )
    assert first["kept"] == 10 and first["index_documents"] == 10
    assert second["exact_duplicates"] == 1 and second["near_duplicates_of_index"] == 1 and second["kept"] == 5
    assert second["index_documents"] == 15
    again = deduplicate_files([tmp_path / "feb.parquet"], tmp_path / "feb2", DedupConfig(), index, "run-feb")
    assert again["kept"] == 5 and again["index_documents"] == 15


def test_lookup_tables_are_rebuilt_from_the_parquet(paragraphs, tmp_path):
    """Tables are derived data: missing, damaged or made for another threshold, they are rebuilt, same answers."""
    index = tmp_path / "index"
    january = [make_document("jan", i, text, lang="zh") for i, text in enumerate(paragraphs[:10])]
    deduplicate_files([write(tmp_path / "jan.parquet", january)], tmp_path / "jan", DedupConfig(), index, "run-jan")
    (signatures,) = index.glob("*.signatures.npy")
    (bands,) = index.glob("*.bands-*.npy")
    signatures.write_bytes(signatures.read_bytes()[:-100])
    bands.unlink()
    february = [
        make_document("feb", "copy", paragraphs[0], lang="zh"),
        make_document("feb", "near", edited(paragraphs[3], 0.005, seed=2), lang="zh"),
    ]
    source = write(tmp_path / "feb.parquet", february)
    rebuilt = deduplicate_files([source], tmp_path / "feb", DedupConfig(), index, "run-feb", allow_empty=True)
    assert rebuilt["exact_duplicates"] == 1 and rebuilt["near_duplicates_of_index"] == 1 and bands.exists()
    looser = deduplicate_files(
        [source], tmp_path / "feb-looser", DedupConfig(threshold=0.5), index, "run-feb", allow_empty=True
    )
    assert looser["exact_duplicates"] == 1 and looser["near_duplicates_of_index"] == 1
    assert sorted(path.name.split(".")[1] for path in index.glob("part-*.bands-*.npy")) == [
        "bands-25x5",
        "bands-9x13",
    ]


def test_damaged_tables_over_a_damaged_part_are_a_clear_error(paragraphs, tmp_path):
    index = tmp_path / "index"
    source = write(
        tmp_path / "docs.parquet", [make_document("x", i, t, lang="zh") for i, t in enumerate(paragraphs[:5])]
    )
    deduplicate_files([source], tmp_path / "out", DedupConfig(), index, "run-1")
    (part,) = index.glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:-20])
    for table in index.glob("*.npy"):
        table.unlink()
    with pytest.raises(CorruptIndexError, match=part.name):
        deduplicate_files([source], tmp_path / "again", DedupConfig(), index, "run-2")


def test_a_corrupt_or_mismatched_index_is_a_clear_error(paragraphs, tmp_path):
    index = tmp_path / "index"
    source = write(
        tmp_path / "docs.parquet", [make_document("x", i, t, lang="zh") for i, t in enumerate(paragraphs[:5])]
    )
    deduplicate_files([source], tmp_path / "out", DedupConfig(), index, "run-1")
    with pytest.raises(CorruptIndexError, match="num_perm"):
        DedupIndex(index, DedupConfig(num_perm=64))
    part = next(index.glob("part-*.parquet"))
    original = part.read_bytes()
    part.write_bytes(original[:-20])
    with pytest.raises(CorruptIndexError, match=part.name):
        list(DedupIndex(index, DedupConfig()).parts())
    part.write_bytes(original)
    (index / "index.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="index.json"):
        DedupIndex(index, DedupConfig())
    (index / "index.json").unlink()
    with pytest.raises(CorruptIndexError, match="refusing to start empty"):
        DedupIndex(index, DedupConfig())


def test_index_signatures_round_trip(paragraphs, tmp_path):
    index = tmp_path / "index"
    source = write(
        tmp_path / "docs.parquet", [make_document("x", i, t, lang="zh") for i, t in enumerate(paragraphs[:3])]
    )
    deduplicate_files([source], tmp_path / "out", DedupConfig(), index, "run-1")
    (part,) = DedupIndex(index, DedupConfig()).parts()
    assert part.signatures.shape == (3, 128) and len(set(part.exact_keys)) == 3
    assert json.loads((index / "index.json").read_text())["parts"][0]["corpus"] == "run-1"


def test_a_rerun_of_a_corpus_replaces_its_own_entries_and_is_not_deduplicated_against_them(paragraphs, tmp_path):
    """The index holds each corpus once: a corpus made again (other settings, same folder) meets the other
    corpora, never its own previous version, which would remove every document as a copy of itself."""
    index = tmp_path / "index"
    documents = [make_document("wiki", i, text, lang="zh") for i, text in enumerate(paragraphs[:10])]
    source = write(tmp_path / "docs.parquet", documents)
    first = deduplicate_files([source], tmp_path / "v1", DedupConfig(), index, "corpus/default")
    stricter = DedupConfig(threshold=0.7)
    again = deduplicate_files([source], tmp_path / "v2", stricter, index, "corpus/default")
    assert first["kept"] == again["kept"] == 10 and again["exact_duplicates"] == 0
    assert again["index_documents"] == 10, "the rerun replaced its entries instead of adding a second copy"
    (entry,) = json.loads((index / "index.json").read_text())["parts"]
    assert entry["corpus"] == "corpus/default"
    assert sorted(path.name for path in index.glob("part-*.parquet")) == [entry["file"]]

    other = tmp_path / "other"
    with pytest.raises(EmptyCorpusError, match=r"10 of 10 as exact_duplicate of the dedup index"):
        deduplicate_files([source], other, DedupConfig(), index, "corpus/copy")
    assert not list(other.glob("part-*.parquet")), "a refused run writes nothing"
    assert len(DedupIndex(index, DedupConfig())) == 10, "and leaves the index as it was"
    allowed = deduplicate_files([source], other, DedupConfig(), index, "corpus/copy", allow_empty=True)
    assert allowed["kept"] == 0 and allowed["exact_duplicates_of_index"] == 10


def test_an_index_written_before_corpus_keys_still_knows_a_corpus_by_its_run(paragraphs, tmp_path):
    """An older index tagged each part with the fingerprint of the run that added it; the corpus whose manifest
    names that fingerprint owns it, and its rerun replaces it."""
    index = tmp_path / "index"
    source = write(
        tmp_path / "docs.parquet", [make_document("x", i, t, lang="zh") for i, t in enumerate(paragraphs[:5])]
    )
    deduplicate_files([source], tmp_path / "old", DedupConfig(), index, "corpus/default")
    manifest = json.loads((index / "index.json").read_text())
    manifest["parts"][0]["added_by"] = "0123456789abcdef-old-fingerprint"
    del manifest["parts"][0]["corpus"]
    (index / "index.json").write_text(json.dumps(manifest))
    key = CorpusKey("corpus/default", ("0123456789abcdef-old-fingerprint",))
    rerun = deduplicate_files([source], tmp_path / "new", DedupConfig(), index, key)
    assert rerun["kept"] == 5 and rerun["index_documents"] == 5
    assert [part["corpus"] for part in json.loads((index / "index.json").read_text())["parts"]] == ["corpus/default"]


def test_a_50_mb_document_is_counted_not_crashed(zuozhuan, tmp_path):
    text = zuozhuan.read_text(encoding="utf-8")
    huge = (text * (50_000_000 // len(text.encode("utf-8")) + 1))[: 50_000_000 // 3]
    source = write(
        tmp_path / "huge.parquet",
        [make_document("h", 0, huge, lang="zh"), make_document("h", 1, text[:5000], lang="zh")],
    )
    stats = deduplicate_files([source], tmp_path / "out", DedupConfig())
    assert stats["documents"] == 2 and stats["kept"] == 2


def test_dedup_compares_texts_without_their_chat_markers(paragraphs, tmp_path):
    text = paragraphs[0]
    documents = [
        make_document("t", 1, f"<|im_start|>{text}<|im_end|>", lang="zh"),
        make_document("t", 2, text, lang="zh"),
    ]
    stats = deduplicate_files([write(tmp_path / "t.parquet", documents)], tmp_path / "out", DedupConfig())
    assert stats["exact_duplicates"] == 1 and kept_ids(tmp_path / "out") == [documents[0]["id"]]


def reference_kept(documents: list[dict], config: DedupConfig) -> list[str]:
    """The dedup rules done the plain way: a set of exact keys, datasketch's in-memory LSH, a dict union-find."""
    hasher = MinHasher(config.num_perm, config.seed)
    lsh = MinHashLSH(
        threshold=config.threshold, num_perm=config.num_perm, weights=(1 - config.recall_weight, config.recall_weight)
    )
    seen, candidates, parent = set(), [], {}

    def root(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    for document in documents:
        key = exact_key(document["text"])
        if key in seen:
            continue
        seen.add(key)
        (signature,) = hasher.signatures([document["text"]], [document["lang"]], config.zh_ngram, config.en_ngram)
        number = parent[len(candidates)] = len(candidates)
        sketch = LeanMinHash(seed=config.seed, hashvalues=signature, scheme="affine32")
        for match in lsh.query(sketch):
            if (candidates[match][1] == signature).mean() >= config.threshold:
                parent[root(number)] = root(match)
        lsh.insert(number, sketch)
        candidates.append((document, signature))
    best = {}
    for number, (document, _) in enumerate(candidates):
        current = best.get(root(number))
        rank = (-len(document["text"]), document["id"])
        if current is None or rank < (-len(current["text"]), current["id"]):
            best[root(number)] = document
    kept = {document["id"] for document in best.values()}
    return [document["id"] for document in documents if document["id"] in kept]


def test_thousands_of_documents_across_batches_dedup_as_the_plain_way_does(zuozhuan, tmp_path):
    documents = planted_near_duplicates(zuozhuan, originals=1500, copies=900, seed=3)
    files = [
        write(tmp_path / f"{i}.parquet", documents[start : start + 1200])
        for i, start in enumerate(range(0, len(documents), 1200))
    ]
    stats = deduplicate_files(files, tmp_path / "out", DedupConfig())
    expected = reference_kept(documents, DedupConfig())
    assert kept_ids(tmp_path / "out") == expected
    assert stats["exact_duplicates"] > 300 and stats["near_duplicates"] > 100 and stats["kept"] == len(expected)
    assert not (tmp_path / "out" / SCRATCH).exists()
