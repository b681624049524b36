"""Tokenizer benchmark: the stage against a raw `Tokenizer.train_from_iterator` on the same sample.

    .venv/bin/python bench/tokenizer.py

Corpus: the Zuozhuan lines and the enwiki sample articles, three times under distinct
ids (about 13.5 MB). The stage streams its language-balanced sample from parquet, then
measures compression on held-out text and writes its files; the reference gets the
same sample as a list already in memory, with the same trainer settings. Best of three.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from _cli import bench_parser
from _corpus import write_bilingual_corpus
from _timing import best_of

from tinylm.config import TokenizerConfig
from tinylm.storage.documents import corpus_parts
from tinylm.tokens.sampling import SamplePlan, sample_texts, survey
from tinylm.tokens.tokenizer import bpe_trainer, new_tokenizer, train_tokenizer


def main() -> None:
    quick = bench_parser(__doc__).parse_args().quick
    copies, vocab_sizes, rounds = (1, (6400,), 1) if quick else (3, (6400, 32000), 3)
    with tempfile.TemporaryDirectory() as directory:
        corpus = Path(directory) / "corpus"
        size = write_bilingual_corpus(corpus, copies=copies)
        print("vocab   corpus MB  sample MB  raw s  stage s  stage/raw time  peak RSS growth MB")
        for vocab_size in vocab_sizes:
            config = TokenizerConfig(vocab_size=vocab_size)
            parts = corpus_parts(corpus)
            plan = SamplePlan.balanced(
                survey(parts, config.seed, config.heldout_fraction, 0),
                config.max_text_bytes,
                {},
                config.seed,
                config.heldout_fraction,
            )
            sample = list(sample_texts(parts, plan, Counter()))
            reference = best_of(
                rounds, lambda: new_tokenizer().train_from_iterator(sample, trainer=bpe_trainer(config))
            )
            runs = iter(range(rounds))
            manifests = []

            def stage(vocab_size: int = vocab_size, config: TokenizerConfig = config) -> None:
                manifests.append(train_tokenizer(corpus, Path(directory) / f"tok-{vocab_size}-{next(runs)}", config))

            ours = best_of(rounds, stage)
            memory = manifests[-1].memory
            print(
                f"{vocab_size:5d} {size / 1e6:11.1f} {sum(len(t.encode()) for t in sample) / 1e6:10.1f} "
                f"{reference:6.2f} {ours:8.2f} "
                f"{ours / reference:15.2f}x {(memory['peak_rss_bytes'] - memory['rss_before_bytes']) / 1e6:19.0f}"
            )


if __name__ == "__main__":
    main()
