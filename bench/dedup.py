"""Dedup benchmark: signature speed against datasketch, and detection quality against the truth.

    .venv/bin/python bench/dedup.py

Speed: same real documents, num_perm 128, seed 1, 5-gram shingles (characters for the
Zuozhuan, words for the enwiki sample). The reference is datasketch as people use it:
one `MinHash` per document, `update_batch` with its default (SHA-1) shingle hash. Best
of three; the signatures' equality with datasketch is checked by the tests.

Quality: 300 real Zuozhuan paragraphs, each edited three times (deleting, inserting and
replacing 5 to 30% of the characters, seeded). A pair is truly a near duplicate when the
exact Jaccard of its shingle sets reaches the threshold; recall and precision of the
dedup's matcher (LSH, then verification by the signatures) are measured against that,
cross-paragraph false matches included. Such edits give Jaccard 0.1 to 0.7, so the
thresholds measured are those that split that range.

Index growth: the cost of checking 1,000 new documents (exact keys and LSH) against persistent indexes of
growing size, with tinylm's memory-mapped tables against rebuilding datasketch's
`MinHashLSH` from the stored signatures (what a run must do when the LSH lives in memory).
The index rows are random signatures, as unrelated documents give.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import bench_parser
from _timing import best_of
from datasketch import MinHash

from tinylm.config import DedupConfig, ExtractConfig
from tinylm.corpus.dedup.deduplicate import exact_key
from tinylm.corpus.dedup.index import (
    CorpusKey,
    DedupIndex,
    IndexPart,
    LocalKnownDocuments,
    PartWriter,
    agrees,
    lsh_for,
    sketch,
)
from tinylm.corpus.dedup.minhash import MinHasher, shingles
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class SignatureMatcher:
    """datasketch's in-memory LSH keyed by row number, with the dedup's verification: it
    returns the candidates the dedup's band tables return (tests/test_lookup_tables.py)."""

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.lsh = lsh_for(config)
        self.rows: list[np.ndarray] = []

    def add(self, signature: np.ndarray) -> None:
        self.lsh.insert(len(self.rows), sketch(signature, self.config), check_duplication=False)
        self.rows.append(signature)

    def matches(self, signature: np.ndarray) -> list[int]:
        return [
            key
            for key in self.lsh.query(sketch(signature, self.config))
            if agrees(self.rows[key], signature, self.config)
        ]


def datasketch_loop(shingle_sets: list[list[bytes]]) -> None:
    for shingle_set in shingle_sets:
        MinHash(num_perm=128, seed=1).update_batch(shingle_set)


def edited(text: str, fraction: float, rng: random.Random, alphabet: str) -> str:
    chars = list(text)
    for _ in range(int(len(text) * fraction)):
        operation, position = rng.choice("dir"), rng.randrange(len(chars))
        if operation == "d" and len(chars) > 1:
            del chars[position]
        elif operation == "i":
            chars.insert(position, rng.choice(alphabet))
        else:
            chars[position] = rng.choice(alphabet)
    return "".join(chars)


def detection_quality(paragraphs: list[str], config: DedupConfig) -> tuple[int, float, float]:
    """(true pairs, recall, precision) of the dedup matcher on edited copies of `paragraphs`."""
    rng = random.Random(0)
    alphabet = "".join(sorted(set("".join(paragraphs))))
    variants = [
        (i, edited(text, rng.uniform(0.05, 0.30), rng, alphabet)) for i, text in enumerate(paragraphs) for _ in range(3)
    ]
    hasher = MinHasher(config.num_perm, config.seed)
    matcher = SignatureMatcher(config)
    for signature in hasher.signatures(paragraphs, ["zh"] * len(paragraphs), config.zh_ngram, config.en_ngram):
        matcher.add(signature)
    signatures = hasher.signatures([v for _, v in variants], ["zh"] * len(variants), config.zh_ngram, config.en_ngram)
    true_positive = false_positive = false_negative = 0
    for (source, variant), signature in zip(variants, signatures):
        a, b = set(shingles(paragraphs[source], "zh", config.zh_ngram)), set(shingles(variant, "zh", config.zh_ngram))
        truly = len(a & b) / len(a | b) >= config.threshold
        found = matcher.matches(signature)
        true_positive += truly and source in found
        false_negative += truly and source not in found
        false_positive += sum(1 for match in found if match != source or not truly)
    positives = true_positive + false_negative
    return positives, true_positive / max(1, positives), true_positive / max(1, true_positive + false_positive)


def main(rounds: int) -> None:
    chinese = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    english = [
        d["text"] for d in read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), Stats())
    ]
    hasher = MinHasher(128, 1)
    hasher.signatures(["warm up"], ["en"], 5, 5)
    print("corpus          docs  shingles  datasketch s  (with shingling)  tinylm s   ratio  (with shingling)")
    for name, texts, lang in (("zuozhuan (zh)", chinese, "zh"), ("enwiki (en)", english, "en")):
        shingle_sets = [shingles(text, lang, 5) for text in texts]
        count = sum(map(len, shingle_sets))
        reference = best_of(rounds, lambda: datasketch_loop(shingle_sets))
        shingling = best_of(rounds, lambda: [shingles(text, lang, 5) for text in texts])
        ours = best_of(rounds, lambda: hasher.signatures(texts, [lang] * len(texts), 5, 5))
        print(
            f"{name:<14} {len(texts):5d} {count:9d} {reference:13.3f} {reference + shingling:17.3f} {ours:9.3f} "
            f"{reference / ours:6.1f}x {(reference + shingling) / ours:12.1f}x"
        )


def quality(settings: tuple[tuple[int, float, bool], ...]) -> None:
    paragraphs = [
        line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if len(line) >= 200
    ][:300]
    print("\nthreshold  num_perm  recall_weight  verify  true pairs  recall  precision")
    for threshold in (0.3, 0.5):
        for num_perm, recall_weight, verify in settings:
            config = DedupConfig(threshold=threshold, num_perm=num_perm, recall_weight=recall_weight, verify=verify)
            positives, recall, precision = detection_quality(paragraphs, config)
            print(
                f"{threshold:9.1f} {num_perm:9d} {recall_weight:14.1f} {str(verify):>7} {positives:11d} {recall:7.3f} "
                f"{precision:10.3f}"
            )


def index_growth(sizes: tuple[int, ...]) -> None:
    config = DedupConfig()
    lines = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line.strip()][
        :1000
    ]
    new = MinHasher(config.num_perm, config.seed).signatures(lines, ["zh"] * len(lines), 5, 5)
    new_keys = [exact_key(line) for line in lines]
    rng = np.random.default_rng(0)
    print("\nindex documents  tinylm tables s  datasketch rebuild s  ratio")
    with tempfile.TemporaryDirectory() as directory:
        index, size = DedupIndex(directory, config), 0
        for part, rows in enumerate(sizes):
            signatures = rng.integers(0, 2**32, size=(rows, config.num_perm), dtype=np.uint32)
            part_file = Path(directory) / f"new-{part}.parquet"
            with PartWriter(part_file, config.num_perm) as writer:
                writer.write(
                    IndexPart(
                        [f"{part}-{row}" for row in range(rows)], [rng.bytes(16) for _ in range(rows)], signatures
                    )
                )
            index.add(part_file, CorpusKey(f"corpus/run-{part}"))
            size += rows
            started = time.perf_counter()
            known = LocalKnownDocuments(DedupIndex(directory, config), config, CorpusKey("corpus/new"))
            known.seen_exact(new_keys)
            known.near(new)
            tables = time.perf_counter() - started
            started = time.perf_counter()
            matcher, exact = SignatureMatcher(config), set()
            for stored in DedupIndex(directory, config).parts():
                exact.update(stored.exact_keys)
                for signature in stored.signatures:
                    matcher.add(signature)
            [key in exact for key in new_keys]
            for signature in new:
                matcher.matches(signature)
            rebuild = time.perf_counter() - started
            print(f"{size:15d} {tables:16.3f} {rebuild:21.3f} {rebuild / tables:6.0f}x")


if __name__ == "__main__":
    if bench_parser(__doc__).parse_args().quick:
        main(rounds=1)
        quality(((128, 0.5, True),))
        index_growth((10_000, 30_000))
    else:
        main(rounds=3)
        quality(((128, 0.5, False), (128, 0.5, True), (256, 0.9, True)))
        index_growth((10_000, 90_000, 400_000))
