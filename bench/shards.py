"""Shards benchmark: the whole stage against raw `Tokenizer.encode_batch` on the same text.

    .venv/bin/python bench/shards.py

Corpus: the Zuozhuan lines and the enwiki sample articles, `COPIES` times under
distinct ids. The reference encodes every text, already in memory, with
`encode_batch` in batches of the same size and keeps nothing; the stage reads the
parquet, encodes, writes the ids, mixes, shuffles, and writes shards and manifest, as
the shards flow (its Prefect task runs included).
Best of three; peak RSS growth of the stage shows it does not hold the corpus.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _cli import bench_parser
from _corpus import write_bilingual_corpus
from _timing import best_of

from tinylm.config import ShardsConfig, TokenizerConfig
from tinylm.flows.shards import shards_flow
from tinylm.peak_memory import peak_resident
from tinylm.storage.documents import corpus_parts, iter_texts
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import load_tokenizer

COPIES = 4


def main() -> None:
    quick = bench_parser(__doc__).parse_args().quick
    copies, vocab_sizes, rounds = (1, (6400,), 1) if quick else (COPIES, (6400, 32000), 3)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        size = write_bilingual_corpus(root / "corpus", copies=copies)
        config = ShardsConfig(shard_tokens=1 << 20)
        print("vocab   corpus MB  tokens M  raw encode_batch s  stage s  stage/raw throughput  peak RSS growth MB")
        for vocab_size in vocab_sizes:
            tokenizer_dir = root / f"tok-{vocab_size}"
            train_tokenizer(
                root / "corpus", tokenizer_dir, TokenizerConfig(vocab_size=vocab_size, max_text_bytes=20_000_000)
            )
            tokenizer = load_tokenizer(tokenizer_dir)
            texts = list(iter_texts(corpus_parts(root / "corpus")))
            batches = [texts[i : i + config.batch_documents] for i in range(0, len(texts), config.batch_documents)]
            reference = best_of(
                rounds, lambda: [tokenizer.encode_batch(batch, add_special_tokens=False) for batch in batches]
            )
            runs = iter(range(rounds))
            manifests = []

            def stage() -> None:
                with peak_resident() as memory:
                    output = root / f"shards-{next(runs)}"
                    manifest = shards_flow(
                        str(root / "corpus"), str(tokenizer_dir), str(output), config, str(root / "workspace")
                    )
                    manifests.append(manifest | {"memory": memory})

            ours = best_of(rounds, stage)
            manifest = manifests[-1]
            tokens = manifest["total_tokens"] + manifest["validation"]["total_tokens"]
            growth = (manifest["memory"]["peak"] - manifest["memory"]["before"]) / 1e6
            sizes = f"{vocab_size:5d} {size / 1e6:11.1f} {tokens / 1e6:9.2f}"
            print(f"{sizes} {reference:19.2f} {ours:8.2f} {reference / ours:21.2f}x {growth:19.0f}")


if __name__ == "__main__":
    main()
