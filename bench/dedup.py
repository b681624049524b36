"""MinHash benchmark: tinylm's batch signatures against a loop of datasketch `update_batch`.

    .venv/bin/python bench/dedup.py

Same real documents, num_perm 128, seed 1, 5-gram shingles (characters for the Zuozhuan,
words for the enwiki sample). The reference is datasketch as people use it: one
`MinHash` per document, `update_batch` with its default (SHA-1) shingle hash. Timings
are the best of three; the signatures' equality with datasketch is checked by the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from datasketch import MinHash

from tinylm.config import ExtractConfig
from tinylm.tasks.minhash import MinHasher, shingles
from tinylm.tasks.readers import ReadStats, read_documents

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def datasketch_loop(shingle_sets: list[list[bytes]]) -> None:
    for shingle_set in shingle_sets:
        MinHash(num_perm=128, seed=1).update_batch(shingle_set)


def main() -> None:
    chinese = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    english = [d["text"] for d in read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), ReadStats())]
    hasher = MinHasher(128, 1)
    hasher.signatures(["warm up"], ["en"], 5, 5)
    print("corpus          docs  shingles  datasketch s  (with shingling)  tinylm s   ratio  (with shingling)")
    for name, texts, lang in (("zuozhuan (zh)", chinese, "zh"), ("enwiki (en)", english, "en")):
        shingle_sets = [shingles(text, lang, 5) for text in texts]
        count = sum(map(len, shingle_sets))
        reference = best_of(3, lambda: datasketch_loop(shingle_sets))
        shingling = best_of(3, lambda: [shingles(text, lang, 5) for text in texts])
        ours = best_of(3, lambda: hasher.signatures(texts, [lang] * len(texts), 5, 5))
        print(
            f"{name:<14} {len(texts):5d} {count:9d} {reference:13.3f} {reference + shingling:17.3f} {ours:9.3f} "
            f"{reference / ours:6.1f}x {(reference + shingling) / ours:12.1f}x"
        )


if __name__ == "__main__":
    main()
