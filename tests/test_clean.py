import json

import opencc
import pyarrow.parquet as pq
import pytest

from tests.conftest import TESTS_DATA
from tinylm.config import ConvertConfig, ExtractConfig, FilterConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.clean import clean_file
from tinylm.corpus.convert import convert_texts, make_converter
from tinylm.corpus.language import detect_languages
from tinylm.corpus.quality import quality_rules
from tinylm.corpus.readers import read_documents
from tinylm.corpus.rules import Judged
from tinylm.stats import Stats
from tinylm.storage.documents import make_document, write_documents
from tinylm.tokens.tokenizer_files import SPECIAL_TOKENS


def test_language_detection():
    assert detect_languages(
        ["美利坚合众国宪法 Constitution", "The Constitution of the United States", "12345 !!! ..."], 0.3
    ) == [
        "zh",
        "en",
        "und",
    ]


def test_both_backends_convert_traditional_to_simplified(constitution):
    simplified = constitution.read_text(encoding="utf-8")[:3000]
    traditional = opencc.OpenCC("s2t").convert(simplified)
    assert traditional != simplified
    for config in (ConvertConfig(), ConvertConfig(backend="zhconv")):
        back = make_converter(config)(traditional)
        same = sum(a == b for a, b in zip(back, simplified))
        assert len(back) == len(simplified) and same / len(simplified) > 0.995


def quality_failure(text: str, lang: str | None, config: FilterConfig) -> str | None:
    return quality_rules(config).judge([Judged(text, lang)])[0]


PROSE = (
    "The history of the printing press in Europe begins with Johannes Gutenberg, whose movable type changed how "
    "books were made, sold and read. Within fifty years presses were working in more than two hundred cities, and "
    "the price of a book fell so far that ordinary merchants could own several. Scholars argue about how quickly "
    "literacy followed, but nobody doubts that the spread of printed pamphlets shaped the religious and political "
    "quarrels of the sixteenth century."
)


def test_each_quality_rule_drops_what_it_names():
    config = FilterConfig()
    cases = {
        "too_short": ("Too short.", "en"),
        "too_few_words": ("A stub article with only a handful of words in it.", "en"),
        "wrong_script": ("这是一篇中文文章，" * 200 + PROSE, "en"),
        "too_many_symbols": (PROSE + " | # | " * 40, "en"),
        "too_many_digits": (PROSE[:300] + " 1234567890 2024 3.14159" * 12, "en"),
        "repeated_lines": ("\n".join([PROSE] + ["Click here to subscribe to our newsletter today."] * 5), "en"),
        "repeated_ngrams": ("buy now " * 60 + PROSE, "en"),
        "unpunctuated_lines": (
            "\n".join(f"Item number {i} in a long list of names and places without sentences" for i in range(12)),
            "en",
        ),
    }
    for reason, (text, lang) in cases.items():
        assert quality_failure(text, lang, config) == reason, reason
    assert quality_failure(PROSE, "en", config) is None
    assert quality_failure(PROSE, "en", FilterConfig(max_chars=100)) == "too_long"


def test_default_rules_keep_real_prose_in_both_languages(enwiki_dump, zuozhuan, constitution):
    config = FilterConfig()
    articles = list(read_documents(enwiki_dump, ExtractConfig(), Stats()))
    kept = [d["title"] for d in articles if quality_failure(d["text"], "en", config) is None]
    assert len(kept) >= 0.95 * len(articles) and "List of anthropologists" not in kept
    for source in (zuozhuan, constitution):
        long_lines = [line for line in source.read_text(encoding="utf-8").splitlines() if len(line) >= 20]
        assert all(quality_failure(line, "zh", config) is None for line in long_lines)


def test_empty_and_symbol_only_texts_are_counted_not_crashed():
    config = FilterConfig(min_chars=0, min_words=0)
    assert quality_failure("", "und", config) == "wrong_script"
    assert quality_failure("!!! ??? ... ---", "und", config) == "wrong_script"


def test_clean_converts_every_han_character_and_titles_leaves_other_text_identical_and_counts_drops(tmp_path):
    english = "Café society — “quoted” text with 漢字 inside, kept exactly as it was written."
    # A zhwiki line whose Han share of letters is under the detection threshold, and a zhwiki title.
    mixed = "2007年8月，Yahoo放出YUI Compressor 1.0—一種JavaScript 壓縮器。"
    documents = [
        make_document("t", 1, "臺灣的歷史與文化，這是一段繁體中文的文字。", title="等M圓及等N圓"),
        make_document("t", 2, english, title="Café"),
        make_document("t", 3, mixed),
        make_document("t", 4, "短"),
        make_document("t", 5, "   \n\t  "),
    ]
    source = tmp_path / "in.parquet"
    write_documents(source, documents)
    stats = clean_file(source, tmp_path / "out", ConvertConfig(), FilterConfig(min_chars=10, min_words=5))
    rows = pq.read_table(stats["output"]).to_pylist()
    assert [row["text"] for row in rows] == [
        "台湾的历史与文化，这是一段繁体中文的文字。",
        english.replace("漢字", "汉字"),
        "2007年8月，Yahoo放出YUI Compressor 1.0—一种JavaScript 压缩器。",
    ]
    assert [row["title"] for row in rows] == ["等M圆及等N圆", "Café", None]
    assert [row["lang"] for row in rows] == ["zh", "en", "zh"], "the zhwiki line is Chinese, by fastText's model"
    assert stats["converted"] == 3
    assert stats["dropped"] == {"too_short": 2}


def test_batch_detection_handles_empty_and_symbol_only_texts():
    texts = ["", "漢字文本", "   ", "!!! 123 ???", "English words here", "混合 mixed 文本 text 中文为主的句子"]
    assert detect_languages(texts, 0.3) == ["und", "zh", "und", "und", "en", "zh"]
    assert detect_languages([], 0.3) == []


def test_a_language_given_by_the_source_is_trusted():
    texts, langs, conversions = convert_texts(["臺灣", "臺灣"], ["en", None], make_converter(ConvertConfig()), 0.3)
    assert langs == ["en", "zh"], "the given language is kept, the missing one detected"
    assert texts == ["台湾", "台湾"] and conversions == [("t2s", None)] * 2, "Han characters are simplified anyway"


MINIMIND_PRETRAIN = TESTS_DATA / "minimind" / "pretrain_hq.jsonl"


@pytest.mark.parametrize("markers", ["keep", "strip"])
def test_minimind_pretrain_lines_are_judged_without_their_chat_markers(markers, tmp_path):
    source = tmp_path / "pretrain_hq.parquet"
    originals = list(read_documents(MINIMIND_PRETRAIN, ExtractConfig(), Stats()))
    write_documents(source, originals)
    stats = clean_file(source, tmp_path / "out", ConvertConfig(), FilterConfig(chat_markers=markers))
    rows = pq.read_table(stats["output"]).to_pylist()
    assert stats["kept"] == 2 and stats["chat_marked"] == 2, "every real line was dropped as too_many_symbols"
    assert [row["lang"] for row in rows] == ["zh", "zh"]
    if markers == "keep":
        assert [row["text"] for row in rows] == [document["text"] for document in originals]
    else:
        first = rows[0]["text"].splitlines()
        assert first[:2] == [
            "鉴别一组中文文章的风格和特点，例如官方、口语、文言等。需要提供样例文章才能准确鉴别不同的风格和特点。",
            "好的，现在帮我查一下今天的天气怎么样?今天的天气依据地区而异。请问你需要我帮你查询哪个地区的天气呢？",
        ]
        assert not any("<|" in row["text"] for row in rows)


def test_markers_do_not_rescue_a_text_that_fails_on_its_own():
    judged = without_chat_markers("<|im_start|>| # | # | # 表 | # |<|im_end|>")
    assert judged == "| # | # | # 表 | # |"
    assert quality_failure(judged, "zh", FilterConfig(min_chars=5)) == "too_many_symbols"


def test_the_known_formats_and_tinylms_own_special_tokens_are_markers():
    texts = [f"{token}正文{token}" for token in SPECIAL_TOKENS]
    texts += [
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>正文<|eot_id|>",
        "<s>[INST] 正文 [/INST]</s>",
        "<｜begin▁of▁sentence｜>正文",
    ]
    assert {without_chat_markers(text).replace("user\n", "") for text in texts} == {"正文"}
    assert without_chat_markers("a < b | c > d, [[link]] <br>") == "a < b | c > d, [[link]] <br>"


def test_each_source_converts_with_its_own_opencc_config_and_the_stats_count_them(tmp_path):
    """OpenCC's own Taiwan and Hong Kong cases (tests/data/opencc), each written by a source whose config names its
    variant: every case comes out as OpenCC's maintainers expect, where t2s alone gets 64 of 106."""
    cases = json.loads((TESTS_DATA / "opencc" / "variant-cases.json").read_text(encoding="utf-8"))["cases"]
    sources = {"tw2s": "tw-plain", "tw2sp": "tw-forum", "hk2s": "hk-news"}
    documents = [make_document(sources[case["config"]], n, case["input"]) for n, case in enumerate(cases)]
    write_documents(tmp_path / "in.parquet", documents)
    convert = ConvertConfig(source_configs={"tw-plain": "tw2s", "tw-*": "tw2sp", "hk-*": "hk2s"})
    keep_all = FilterConfig(
        min_chars=0, min_words=0, min_script_share=0, max_symbol_share=1, max_digit_share=1, max_top_ngram_share=1
    )
    stats = clean_file(tmp_path / "in.parquet", tmp_path / "out", convert, keep_all)
    texts = [row["text"] for row in pq.read_table(stats["output"]).to_pylist()]
    assert texts == [case["expected"] for case in cases]
    assert (
        sum(make_converter(ConvertConfig(detect_regions=False))(case["input"]) == case["expected"] for case in cases)
        == 64
    )
    # Detection changes characters and vetted words only, none of the phrases OpenCC's tw2sp cases expect.
    assert sum(make_converter(ConvertConfig())(case["input"]) == case["expected"] for case in cases) == 64
    assert set(stats["converted_with"]) == {"tw2s", "tw2sp", "hk2s"} and sum(stats["converted_with"].values()) > 90
