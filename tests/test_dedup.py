import random

import pyarrow.parquet as pq

from tinylm.config import DedupConfig
from tinylm.storage.documents import make_document, write_documents
from tinylm.tasks.dedup import deduplicate_files, exact_key
from tinylm.tasks.minhash import shingles


def edited(text: str, fraction: float, seed: int) -> str:
    """Replace `fraction` of the characters at random positions, as a near-duplicate would."""
    rng = random.Random(seed)
    chars = list(text)
    for position in rng.sample(range(len(chars)), int(len(chars) * fraction)):
        chars[position] = rng.choice("的一是在不了有和人这中大为上个国")
    return "".join(chars)


def test_exact_key_ignores_case_and_whitespace():
    assert exact_key("Hello   World\n") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello world!")


def test_exact_and_near_duplicates_are_removed_first_kept(zuozhuan, tmp_path):
    paragraphs = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 400][:20]
    documents = [make_document("zz", i, text, lang="zh") for i, text in enumerate(paragraphs)]
    documents.append(make_document("zz", "copy", paragraphs[0] + "  ", lang="zh"))
    near = edited(paragraphs[1], 0.005, seed=1)
    a, b = set(shingles(paragraphs[1], "zh", 5)), set(shingles(near, "zh", 5))
    assert len(a & b) / len(a | b) > 0.9
    documents.append(make_document("zz", "near", near, lang="zh"))
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_documents(first, documents[:10])
    write_documents(second, documents[10:])
    stats = deduplicate_files([first, second], tmp_path / "out", DedupConfig())
    kept = [row["id"] for part in ("part-00000", "part-00001") for row in pq.read_table(tmp_path / "out" / f"{part}.parquet").to_pylist()]
    assert stats["exact_duplicates"] == 1 and stats["near_duplicates"] == 1
    assert kept == [d["id"] for d in documents[:20]]


def test_english_near_duplicates_use_word_shingles(tmp_path):
    text = " ".join(["Anarchism is a political philosophy that advocates self-governed societies"] * 3) + " based on voluntary institutions and free association of individuals."
    documents = [
        make_document("en", 1, text, lang="en"),
        make_document("en", 2, text.replace("voluntary", "Voluntary"), lang="en"),
        make_document("en", 3, "A completely different sentence about the history of the printing press in Europe.", lang="en"),
    ]
    source = tmp_path / "en.parquet"
    write_documents(source, documents)
    stats = deduplicate_files([source], tmp_path / "out", DedupConfig(exact=False))
    assert stats["near_duplicates"] == 1 and stats["kept"] == 2
