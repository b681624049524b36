import opencc
import pyarrow.parquet as pq

from tinylm.config import ConvertConfig, FilterConfig
from tinylm.storage.documents import make_document, write_documents
from tinylm.tasks.clean import clean_file
from tinylm.tasks.convert import convert_texts, detect_language, detect_languages, make_converter
from tinylm.tasks.quality import quality_failure


def test_language_detection():
    assert detect_language("美利坚合众国宪法 Constitution", 0.3) == "zh"
    assert detect_language("The Constitution of the United States", 0.3) == "en"
    assert detect_language("12345 !!! ...", 0.3) == "und"


def test_both_backends_convert_traditional_to_simplified(constitution):
    simplified = constitution.read_text(encoding="utf-8")[:3000]
    traditional = opencc.OpenCC("s2t").convert(simplified)
    assert traditional != simplified
    for config in (ConvertConfig(), ConvertConfig(backend="zhconv")):
        back = make_converter(config)(traditional)
        same = sum(a == b for a, b in zip(back, simplified))
        assert len(back) == len(simplified) and same / len(simplified) > 0.995


def test_quality_rules_name_the_reason():
    config = FilterConfig(min_chars=10, max_chars=100, max_symbol_ratio=0.3)
    assert quality_failure("short", config) == "too_short"
    assert quality_failure("x" * 101, config) == "too_long"
    assert quality_failure("#### $$$$ %%%% @@@@", config) == "too_many_symbols"
    assert quality_failure("A perfectly ordinary sentence.", config) is None


def test_clean_converts_chinese_leaves_english_identical_and_counts_drops(tmp_path):
    english = "Café society — “quoted” text with 漢字 inside, kept exactly as it was written."
    documents = [
        make_document("t", 1, "臺灣的歷史與文化，這是一段繁體中文的文字。"),
        make_document("t", 2, english),
        make_document("t", 3, "短"),
        make_document("t", 4, "   \n\t  "),
    ]
    source = tmp_path / "in.parquet"
    write_documents(source, documents)
    stats = clean_file(source, tmp_path / "out", ConvertConfig(), FilterConfig(min_chars=10))
    rows = pq.read_table(stats["output"]).to_pylist()
    assert [row["text"] for row in rows] == ["台湾的历史与文化，这是一段繁体中文的文字。", english]
    assert [row["lang"] for row in rows] == ["zh", "en"]
    assert stats["converted"] == 1
    assert stats["dropped"] == {"too_short": 2}


def test_batch_detection_handles_empty_and_symbol_only_texts():
    texts = ["", "漢字文本", "   ", "!!! 123 ???", "English words here", "混合 mixed 文本 text 中文为主的句子"]
    assert detect_languages(texts, 0.3) == ["und", "zh", "und", "und", "en", "zh"]
    assert detect_languages([], 0.3) == []


def test_a_language_given_by_the_source_is_trusted():
    texts, langs, changed = convert_texts(["臺灣", "臺灣"], ["en", None], make_converter(ConvertConfig()), 0.3)
    assert texts == ["臺灣", "台湾"] and langs == ["en", "zh"] and changed == 1
