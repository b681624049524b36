"""Conversion benchmark: the stage's batch conversion against raw `opencc.OpenCC(config).convert`.

    .venv/bin/python bench/convert.py

Text: the Zuozhuan and the US Constitution converted to traditional with OpenCC `s2t`
in this run, plus the same number of English lines from the enwiki sample. The stage
detects the language of every line and converts the Chinese ones; the reference converts
every line. Both ways of identifying the language are timed: `script` (the Han share) and
`fasttext` (the default: scripts for East Asian lines, fastText's model for the rest), each
with Taiwan and Hong Kong detection (the default, `convert.detect_regions`) and without.
Best of seven: each run takes only tens of milliseconds.

Variants: OpenCC's own Taiwan and Hong Kong cases (tests/data/opencc, 106 cases of tw2s,
tw2sp and hk2s): exact matches with plain t2s for every case, with the stage's default
(t2s, or the detected region's forms and vetted words), and with each case's source converted by
its own config (`convert.source_configs`).

Meaning: real sentences where a phrase table changes what a sentence says (tests/data/meaning: 智慧 as wisdom,
支援 as help, 本線上 as "on the main line", 軟體動物, 網路由器): for each way of converting, how many come out
holding a form that says something else (智能, 支持, 在线, 进程); tinylm's conversion for a Taiwan-detected text
is applied to every sentence, whether or not detection would pick it.

Detection on real text of each kind: Android Messaging's strings as its translators wrote
them for Taiwan, Hong Kong and the mainland (tests/data/android), and the Zuozhuan in
traditional forms (no region's words): how many strings each region is found in, and how
many of the Taiwan and Hong Kong strings convert to exactly the mainland string.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import opencc
from _cli import bench_parser
from _timing import best_of

from tinylm.config import ConvertConfig, ExtractConfig
from tinylm.corpus.convert import SourceConverters, convert_texts, make_converter
from tinylm.corpus.readers import read_documents
from tinylm.corpus.variants import RegionDetector, region_converters
from tinylm.stats import Stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TESTS_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
VARIANT_CASES = TESTS_DATA / "opencc" / "variant-cases.json"
ANDROID_STRINGS = TESTS_DATA / "android" / "messaging-strings.jsonl"
MEANING = TESTS_DATA / "meaning" / "sentences.json"


def main() -> None:
    rounds = 2 if bench_parser(__doc__).parse_args().quick else 7
    to_traditional = opencc.OpenCC("s2t").convert
    chinese = [
        to_traditional(line)
        for name in ("zuozhuan-zhs.txt", "us-constitution-zhs.txt")
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    english_docs = read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), Stats())
    english = [line for d in english_docs for line in d["text"].splitlines() if line.strip()][: len(chinese)]
    config = ConvertConfig()
    raw = opencc.OpenCC(config.opencc_config).convert
    print("text         language_id regions   lines      MB  raw OpenCC s  stage s  stage/raw throughput")
    for name, lines in (("chinese", chinese), ("mixed zh+en", chinese + english)):
        size = sum(len(line.encode("utf-8")) for line in lines) / 1e6
        reference = best_of(rounds, lambda: [raw(line) for line in lines])
        for identify in ("script", "fasttext"):
            for regions in (True, False):
                stage = make_converter(config.model_copy(update={"detect_regions": regions}))
                ours = best_of(
                    rounds,
                    lambda: [
                        convert_texts(batch, [None] * len(batch), stage, config.cjk_threshold, None, identify)
                        for batch in (lines[i : i + 1024] for i in range(0, len(lines), 1024))
                    ],
                )
                timing = f"{reference:13.3f} {ours:8.3f} {reference / ours:10.2f}x"
                detection = "detect" if regions else "off"
                print(f"{name:<12} {identify:<11} {detection:<7} {len(lines):7d} {size:7.2f} {timing}")


def variant_cases() -> None:
    """Exact matches on OpenCC's Taiwan and Hong Kong cases: plain t2s, the default's detection, a config per
    source."""
    cases = json.loads(VARIANT_CASES.read_text(encoding="utf-8"))["cases"]
    plain = make_converter(ConvertConfig(detect_regions=False))
    detecting = make_converter(ConvertConfig())
    per_source = SourceConverters(ConvertConfig(source_configs={"tw2s": "tw2s", "tw2sp": "tw2sp", "hk2s": "hk2s"}))
    exact = {
        "t2s": sum(plain(case["input"]) == case["expected"] for case in cases),
        "detected regions (default)": sum(detecting(case["input"]) == case["expected"] for case in cases),
        "each source's own config": sum(
            per_source.for_source(case["config"])(case["input"]) == case["expected"] for case in cases
        ),
    }
    print(f"\nOpenCC's variant cases ({len(cases)}), exact:", ", ".join(f"{k} {v}" for k, v in exact.items()))


def meaning_changes() -> None:
    """Sentences whose conversion says something else, for OpenCC's configs and for tinylm's."""
    sentences = json.loads(MEANING.read_text(encoding="utf-8"))["sentences"]
    conversions = {config: opencc.OpenCC(config).convert for config in ("t2s", "tw2s", "tw2sp", "hk2sp")}
    conversions["tinylm (default)"] = make_converter(ConvertConfig())
    conversions["tinylm as Taiwan's"] = region_converters()["tw"]
    print(f"\nmeaning changes on {len(sentences)} real sentences:")
    for name, convert in conversions.items():
        changed = [item["id"] for item in sentences if any(form in convert(item["text"]) for form in item["never"])]
        print(f"  {name:<20} {len(changed):3d}  {' '.join(changed)}")


def detection() -> None:
    rows = [json.loads(line) for line in ANDROID_STRINGS.open(encoding="utf-8")]
    detector = RegionDetector()
    plain = make_converter(ConvertConfig(detect_regions=False))
    detecting = make_converter(ConvertConfig())
    to_traditional = opencc.OpenCC("s2t").convert
    classical = [to_traditional(line) for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines()]
    texts = {column: [row[column] for row in rows] for column in ("zh-TW", "zh-HK", "zh-CN")}
    texts["Zuozhuan (traditional)"] = [line for line in classical if line]
    print("\ntext                    strings  found tw  found hk  exact with t2s  exact with detection")
    for name, strings in texts.items():
        found = Counter(detector.region(text) for text in strings)
        if name in ("zh-TW", "zh-HK"):
            mainland = texts["zh-CN"]
            before = sum(plain(text) == target for text, target in zip(strings, mainland))
            after = sum(detecting(text) == target for text, target in zip(strings, mainland))
            exact = f"{before:14d} {after:21d}"
        else:
            exact = f"{'':>14} {'':>21}"
        print(f"{name:<23} {len(strings):8d} {found['tw']:9d} {found['hk']:9d} {exact}")


if __name__ == "__main__":
    main()
    variant_cases()
    meaning_changes()
    detection()
