"""Conversion benchmark: the stage's batch conversion against raw `opencc.OpenCC(config).convert`.

    .venv/bin/python bench/convert.py

Text: the Zuozhuan and the US Constitution converted to traditional with OpenCC `s2t`
in this run, plus the same number of English lines from the enwiki sample. The stage
detects the language of every line and converts the Chinese ones; the reference converts
every line. Both ways of identifying the language are timed: `script` (the Han share) and
`fasttext` (the default: scripts for East Asian lines, fastText's model for the rest).
Best of seven: each run takes only tens of milliseconds.

Variants: OpenCC's own Taiwan and Hong Kong cases (tests/data/opencc, 106 cases of tw2s,
tw2sp and hk2s): exact matches with t2s for every case (the default), and with each case's
source converted by its own config (`convert.source_configs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import opencc
from _cli import bench_parser
from _timing import best_of

from tinylm.config import ConvertConfig, ExtractConfig
from tinylm.corpus.convert import SourceConverters, convert_texts, make_converter
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VARIANT_CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "opencc" / "variant-cases.json"


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
    stage = make_converter(config)
    print("text         language_id   lines      MB  raw OpenCC s  stage s  stage/raw throughput")
    for name, lines in (("chinese", chinese), ("mixed zh+en", chinese + english)):
        size = sum(len(line.encode("utf-8")) for line in lines) / 1e6
        reference = best_of(rounds, lambda: [raw(line) for line in lines])
        for identify in ("script", "fasttext"):
            ours = best_of(
                rounds,
                lambda: [
                    convert_texts(batch, [None] * len(batch), stage, config.cjk_threshold, None, identify)
                    for batch in (lines[i : i + 1024] for i in range(0, len(lines), 1024))
                ],
            )
            timing = f"{reference:13.3f} {ours:8.3f} {reference / ours:10.2f}x"
            print(f"{name:<12} {identify:<11} {len(lines):7d} {size:7.2f} {timing}")


def variant_cases() -> None:
    """Exact matches on OpenCC's Taiwan and Hong Kong cases: t2s for all, then a config per source."""
    cases = json.loads(VARIANT_CASES.read_text(encoding="utf-8"))["cases"]
    t2s = make_converter(ConvertConfig())
    per_source = SourceConverters(ConvertConfig(source_configs={"tw2s": "tw2s", "tw2sp": "tw2sp", "hk2s": "hk2s"}))
    before = sum(t2s(case["input"]) == case["expected"] for case in cases)
    after = sum(per_source.for_source(case["config"])[1](case["input"]) == case["expected"] for case in cases)
    print(f"\nOpenCC's variant cases, exact: t2s {before}/{len(cases)}, each source's own config {after}/{len(cases)}")


if __name__ == "__main__":
    main()
    variant_cases()
