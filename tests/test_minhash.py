"""Batch signatures must equal datasketch's for the same shingles, seed and num_perm."""

import numpy as np
import pytest
from datasketch import MinHash

from tinylm.config import ExtractConfig
from tinylm.corpus.dedup import minhash
from tinylm.corpus.dedup.minhash import (
    MinHasher,
    char_shingle_hash,
    shingles,
    tokens,
    word_id,
    word_ids,
    word_shingle_hash,
)
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats


def datasketch_signature(text: str, lang: str, n: int, num_perm: int, seed: int) -> np.ndarray:
    hashfunc = char_shingle_hash if lang == "zh" else word_shingle_hash
    minhash = MinHash(num_perm=num_perm, seed=seed, hashfunc=hashfunc)
    minhash.update_batch(shingles(text, lang, n))
    return minhash.hashvalues


@pytest.fixture(scope="module")
def real_texts(zuozhuan, table_dump):
    chinese = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if line.strip()][:300]
    english = [d["text"] for d in read_documents(table_dump, ExtractConfig(), Stats())]
    return [(text, "zh") for text in chinese] + [(text, "en") for text in english]


@pytest.mark.parametrize("num_perm, seed, n", [(128, 1, 5), (64, 7, 3), (256, 42, 1)])
def test_batch_signatures_equal_datasketch(real_texts, num_perm, seed, n):
    texts, langs = zip(*real_texts)
    ours = MinHasher(num_perm, seed).signatures(texts, langs, n, n)
    for row, (text, lang) in enumerate(real_texts):
        assert np.array_equal(ours[row], datasketch_signature(text, lang, n, num_perm, seed)), (lang, text[:40])


def test_edge_cases_equal_datasketch():
    cases = [
        ("", "en"),
        ("", "zh"),
        ("   \n\t", "zh"),
        ("!!! ??? ...", "en"),
        ("短", "zh"),
        ("two words", "en"),
        ("İstanbul ǅemal ŉ straße ΣΊΣΥΦΟΣ", "en"),
        ("𠀀𪚥😀 混合 text 文本", "zh"),
        ("x" * 5000 + " y", "en"),
    ]
    texts, langs = zip(*cases)
    ours = MinHasher(128, 1).signatures(texts, langs, 5, 5)
    for row, (text, lang) in enumerate(cases):
        assert np.array_equal(ours[row], datasketch_signature(text, lang, 5, 128, 1)), repr(text[:20])
    assert (ours[0] == 0xFFFFFFFF).all()


@pytest.mark.parametrize("piece", [None, 7])
def test_long_texts_go_in_pieces_without_changing_word_ids(real_texts, monkeypatch, piece):
    """Texts longer than a piece (2**20 code points) are cut between words;
    with tiny pieces, words longer than a piece and pieces without a gap are exercised too."""
    if piece:
        monkeypatch.setattr(minhash, "_PIECE", piece)
    english = [text for text, lang in real_texts if lang == "en"]
    text = (
        " ".join(english * 12) if piece is None else "ab cdefghijklmnop q " + english[0][:3000] + " rstuvwxyzabcdefghij"
    )
    assert len(text) > minhash._PIECE
    assert word_ids(text).tolist() == [word_id(word) for word in tokens(text, "en")]


def test_similar_texts_have_similar_signatures(zuozhuan):
    paragraph = max(zuozhuan.read_text(encoding="utf-8").splitlines(), key=len)
    edited = paragraph[:100] + "之乎者也" + paragraph[104:]
    other = sorted(zuozhuan.read_text(encoding="utf-8").splitlines(), key=len)[-2]
    signatures = MinHasher().signatures([paragraph, edited, other], ["zh"] * 3, 5, 5)
    assert (signatures[0] == signatures[1]).mean() > 0.9
    assert (signatures[0] == signatures[2]).mean() < 0.1
