"""Language identification on real lines: Tatoeba's labelled sentences (ja, zh, ko, de) and classical Chinese."""

import collections
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import TESTS_DATA
from tinylm.config import ConvertConfig, CorpusConfig, ExtractConfig, FilterConfig
from tinylm.corpus.clean import clean_file
from tinylm.corpus.language import detect_languages
from tinylm.corpus.language_model import model_languages
from tinylm.corpus.rejected import rejected_path
from tinylm.flows.corpus import corpus_flow
from tinylm.storage.documents import make_document, write_documents


@pytest.fixture(scope="module")
def sentences() -> list[tuple[str, str]]:
    lines = (TESTS_DATA / "tatoeba" / "sentences.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t", 1)) for line in lines]


def correct_by_language(sentences: list[tuple[str, str]], labels: list[str]) -> dict[str, int]:
    return dict(collections.Counter(truth for (truth, _), label in zip(sentences, labels) if label == truth))


def test_scripts_and_the_model_label_japanese_korean_and_german_that_the_cjk_share_called_zh_or_en(sentences):
    texts = [text for _, text in sentences]
    assert correct_by_language(sentences, detect_languages(texts, 0.3, "script")) == {"zh": 40}
    identified = correct_by_language(sentences, detect_languages(texts, 0.3, "fasttext"))
    assert identified == {"ja": 39, "zh": 40, "ko": 30, "de": 28}, "前言撤回。 holds no kana: Chinese it is"


def test_classical_chinese_is_chinese_where_the_model_alone_says_japanese(zuozhuan):
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert set(detect_languages(lines, 0.3, "fasttext")) == {"zh"}
    assert collections.Counter(model_languages(lines))["ja"] > len(lines) / 20, "why scripts decide East Asian text"


def test_japanese_and_korean_keep_their_own_han_forms_and_a_language_list_drops_the_rest(sentences, tmp_path):
    documents = [make_document("tatoeba", number, text) for number, (_, text) in enumerate(sentences)]
    write_documents(tmp_path / "in.parquet", documents)
    lines = FilterConfig(preset="lines", languages=["zh", "ja"])
    stats = clean_file(tmp_path / "in.parquet", tmp_path / "out", ConvertConfig(), lines, tmp_path / "rejected")
    kept = pq.read_table(stats["output"]).to_pylist()
    japanese = {row["text"] for row in kept if row["lang"] == "ja"}
    assert "彼は約束を破った。そのことが彼の妻を怒らせた。" in japanese, "t2s would write 约 and 让"
    assert "他失信了，这让他妻子生气。" in {row["text"] for row in kept if row["lang"] == "zh"}
    assert "只是字有些拼错而已。" in {row["text"] for row in kept}, "traditional Chinese is simplified as before"
    assert stats["languages"] == {"ja": 39, "zh": 41, "ko": 30, "de": 28, "en": 1, "pt": 1}
    assert stats["dropped"]["other_language"] == 60
    stem = Path(stats["output"]).stem
    rejected = pq.read_table(rejected_path(tmp_path / "rejected", "other_language", stem))
    assert {row["lang"] for row in rejected.to_pylist()} == {"ko", "de", "en", "pt"}


def test_a_corpus_the_filters_empty_is_an_error_naming_the_rule(prefect_api, constitution, workspace, tmp_path):
    """A language code no document has (`cn` for `zh`) once made a green run with an empty corpus."""
    config = CorpusConfig(extract=ExtractConfig(text_mode="line"), filters=FilterConfig(languages=["cn"]))
    with pytest.raises(ValueError, match=r"the filters dropped all 158 documents \(other_language 158\)"):
        corpus_flow([str(constitution)], str(tmp_path / "corpus"), config, None, str(workspace))
