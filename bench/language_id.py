"""Language identification benchmark: tinylm's labels against the CJK-share rule it replaces and fastText alone.

    .venv/bin/python bench/language_id.py

Accuracy on real labelled lines: Tatoeba's sentences in tests/data/tatoeba (40 Japanese,
40 Chinese, 30 Korean, 30 German), and every line of the Zuozhuan (5,364 lines of classical
Chinese, ../shared/data). Three ways: `script` (zh where Han characters reach 30% of the
letters, else en: tinylm before language identification), `fastText alone` (lid.176 on
every text, Chinese dialects counted as zh), and `fasttext` (tinylm's default: scripts for
East Asian text, the model for the rest).

Speed: MB/s of text labelled by each way, on the Zuozhuan lines and on the enwiki sample's
articles (each judged on its first 1,024 characters, as the corpus stage judges), best of three.
"""

from __future__ import annotations

import collections
from pathlib import Path

from _cli import bench_parser
from _timing import best_of

from tinylm.config import ExtractConfig
from tinylm.corpus.language import SAMPLE_CHARS, detect_languages
from tinylm.corpus.language_model import model_languages
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

WAYS = {
    "script (CJK share)": lambda texts: detect_languages(texts, 0.3, "script"),
    "fastText alone": lambda texts: model_languages([text[:SAMPLE_CHARS] for text in texts]),
    "fasttext (tinylm)": lambda texts: detect_languages(texts, 0.3, "fasttext"),
}


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    rows = [line.split("\t", 1) for line in (ROOT / "tests/data/tatoeba/sentences.tsv").read_text("utf-8").splitlines()]
    truth, sentences = [row[0] for row in rows], [row[1] for row in rows]
    zuozhuan = [line for line in (DATA / "zuozhuan-zhs.txt").read_text("utf-8").splitlines() if line.strip()]
    dump = DATA / "enwiki-sample-pages-articles.xml.bz2"
    articles = [document["text"] for document in read_documents(dump, ExtractConfig(), Stats())]
    totals = collections.Counter(truth)
    header = " ".join(f"{lang:>7}" for lang in totals)
    print(f"{'way':20} {header} {'Zuozhuan zh':>12} {'zh MB/s':>8} {'en MB/s':>8}")
    for name, way in WAYS.items():
        labels = way(sentences)
        right = collections.Counter(label for label, expected in zip(labels, truth) if label == expected)
        zh_share = collections.Counter(way(zuozhuan))["zh"] / len(zuozhuan)
        speeds = []
        for texts in (zuozhuan, articles):
            megabytes = sum(len(text.encode()) for text in texts) / 1e6
            speeds.append(megabytes / best_of(1 if args.quick else 3, lambda: way(texts)))
        cells = " ".join(f"{right[lang]:>3}/{totals[lang]:<3}" for lang in totals)
        print(f"{name:20} {cells} {zh_share:>11.1%} {speeds[0]:>8.1f} {speeds[1]:>8.1f}")


if __name__ == "__main__":
    main()
