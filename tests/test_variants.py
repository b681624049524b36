"""Telling Taiwan- and Hong Kong-written text apart, on real text written for each (tests/data/android) and on
region-neutral text (the Zuozhuan, converted to traditional)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import opencc
import pyarrow.parquet as pq
import pytest

from tinylm.config import ConvertConfig, FilterConfig
from tinylm.corpus.clean import clean_file
from tinylm.corpus.convert import convert_file, make_converter
from tinylm.corpus.variants import RegionDetector, region_converters
from tinylm.storage.documents import make_document, write_documents

TESTS_DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROWS = [json.loads(line) for line in (TESTS_DATA / "android" / "messaging-strings.jsonl").open(encoding="utf-8")]
KEEP_ALL = FilterConfig(
    min_chars=0, min_words=0, min_script_share=0, max_symbol_share=1, max_digit_share=1, max_top_ngram_share=1
)


def test_a_taiwan_and_a_hong_kong_file_are_told_apart_and_mainland_text_has_no_region():
    detector = RegionDetector()
    assert detector.region("\n".join(row["zh-TW"] for row in ROWS)) == "tw"
    assert detector.region("\n".join(row["zh-HK"] for row in ROWS)) == "hk"
    assert detector.region("\n".join(row["zh-CN"] for row in ROWS)) is None


def test_string_by_string_a_region_is_named_only_on_evidence():
    """Most strings are too short to show their region (設定 is every traditional writer's word) and keep t2s;
    those that show one are rarely taken for the other."""
    detector = RegionDetector()
    taiwan = Counter(detector.region(row["zh-TW"]) for row in ROWS)
    hong_kong = Counter(detector.region(row["zh-HK"]) for row in ROWS)
    assert taiwan["tw"] >= 45 and taiwan["hk"] <= 1
    assert hong_kong["hk"] >= 25 and hong_kong["hk"] > hong_kong["tw"]


def test_detected_taiwan_text_converts_closer_to_what_mainland_readers_are_shown():
    plain, detecting = make_converter(ConvertConfig(detect_regions=False)), make_converter(ConvertConfig())
    for column, before in (("zh-TW", 81), ("zh-HK", 83)):
        assert sum(plain(row[column]) == row["zh-CN"] for row in ROWS) == before
        assert sum(detecting(row[column]) == row["zh-CN"] for row in ROWS) >= before + 3, column
    assert detecting("請用滑鼠選取簡訊") == "请用鼠标选取短信" and plain("請用滑鼠選取簡訊") == "请用滑鼠选取简讯"


def test_region_neutral_traditional_text_keeps_plain_t2s():
    """The Zuozhuan in OpenCC's standard traditional forms: no region's words, so (almost) nothing is taken for
    Taiwan's or Hong Kong's, and its 建立 and 執行 are not rewritten as Taiwan's computing terms."""
    to_traditional = opencc.OpenCC("s2t").convert
    lines = [line for line in (SHARED_DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line]
    detector = RegionDetector()
    regions = Counter(detector.region(to_traditional(line)) for line in lines)
    assert regions[None] >= len(lines) - 5, regions


def test_the_clean_stage_counts_each_regions_documents(tmp_path):
    documents = [make_document("android", n, row["zh-TW"]) for n, row in enumerate(ROWS)]
    documents += [make_document("android-hk", n, row["zh-HK"]) for n, row in enumerate(ROWS)]
    # Again with another source: over 1024 documents, so the stage reads them in more than one batch.
    documents += [make_document("android-again", n, row["zh-TW"]) for n, row in enumerate(ROWS)]
    write_documents(tmp_path / "in.parquet", documents)
    stats = clean_file(tmp_path / "in.parquet", tmp_path / "out", ConvertConfig(), KEEP_ALL)
    detector = RegionDetector()
    expected = Counter(detector.region(document["text"]) for document in documents)
    assert stats["converted_variant"] == {"tw": expected["tw"], "hk": expected["hk"]}
    assert stats["converted_with"]["tw2s+words"] == expected["tw"]
    assert stats["converted_with"]["hk2s+words"] == expected["hk"]
    texts = {row["id"]: row["text"] for row in pq.read_table(stats["output"]).to_pylist()}
    assert "短信" in "".join(texts.values())
    off = clean_file(tmp_path / "in.parquet", tmp_path / "off", ConvertConfig(detect_regions=False), KEEP_ALL)
    assert "converted_variant" not in off or not off["converted_variant"]
    assert set(off["converted_with"]) == {"t2s"}


def test_the_convert_command_counts_the_lines_it_read_as_taiwans(tmp_path):
    source = tmp_path / "taiwan.txt"
    source.write_text("".join(row["zh-TW"] + "\n" for row in ROWS), encoding="utf-8")
    stats = convert_file(source, tmp_path / "out.txt", ConvertConfig())
    detector = RegionDetector()
    assert stats["converted_variant"]["tw"] == sum(detector.region(row["zh-TW"]) == "tw" for row in ROWS) >= 45


MEANING = json.loads((Path(__file__).parent / "data" / "meaning" / "sentences.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("item", MEANING["sentences"], ids=lambda item: item["id"])
def test_a_detected_regions_conversion_never_changes_what_a_real_sentence_says(item):
    """Real sentences where OpenCC's Taiwan phrase table changes meaning (智慧 → 智能, 本線上 → 本在线, 支援 → 支持):
    the conversion a Taiwan-detected text gets, and the default's, write what the sentence says."""
    as_taiwan, default = region_converters()["tw"](item["text"]), make_converter(ConvertConfig())(item["text"])
    assert as_taiwan == default == item["expected"]
    assert not [form for form in item["never"] if form in as_taiwan]


def test_the_meaning_sentences_are_ones_a_phrase_table_gets_wrong():
    """The check can fail: OpenCC's tw2sp changes the meaning of most of these sentences."""
    phrase_table = opencc.OpenCC("tw2sp").convert
    changed = [
        item["id"] for item in MEANING["sentences"] if any(f in phrase_table(item["text"]) for f in item["never"])
    ]
    assert len(changed) >= 7, changed


def test_vetted_words_convert_in_taiwan_text_and_guards_keep_the_longer_word():
    convert = region_converters()["tw"]
    assert convert("這個軟體用滑鼠操作，資料庫在義大利的伺服器上") == "这个软件用鼠标操作，数据库在意大利的服务器上"
    assert convert("軟體動物") == "软体动物" and convert("網路由器") == "网路由器" and convert("快閃記憶體") == "闪存"
