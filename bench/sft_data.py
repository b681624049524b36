"""SFT data at real sizes: chat-data throughput, and the memory training needs to read it.

    .venv/bin/python bench/sft_data.py [--mb 1024] [--quick]

Generates MiniMind-format SFT jsonl (`{"conversations": [...]}`) of `--mb` megabytes from
real text: Zuozhuan lines and enwiki paragraphs, recombined with a seed into questions
and multi-paragraph answers (about 1 KB a record, as in MiniMind's `sft_mini_512.jsonl`),
split into two files. Runs the chat-data flow on them (the stage's MB/s and peak RSS),
then reads training batches spread over the whole set through `open_training_data` and
reports what that allocates (tracemalloc's peak, numpy included; the memory-mapped pages
it reads are file cache, shared and reclaimable) against the reference: the same
conversations held as Python lists of token ids, as tinylm's parquet reader held them,
measured on one eighth of the set (`--reference-share`) and scaled up.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _cli import bench_parser
from _corpus import DATA, write_bilingual_corpus

from tinylm.config import ChatDataConfig, ExtractConfig, TokenizerConfig
from tinylm.corpus.readers import read_documents
from tinylm.flows.chat_data import chat_data_flow
from tinylm.peak_memory import peak_resident
from tinylm.stats import Stats
from tinylm.tokens.chat_arrays import ChatPart
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.training.data import open_training_data
from tinylm.training.runs import TrainConfig


def resident_kinds() -> dict[str, int]:
    """RssAnon (what the process allocated) and RssFile (file pages it maps, page cache: shared, reclaimable), bytes."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Rss")
    )
    return {name: int(fields[name].split()[0]) * 1024 for name in ("RssAnon", "RssFile")}


def write_sft_files(directory: Path, megabytes: int, seed: int = 0) -> list[Path]:
    """Two jsonl files of conversations built from real text, `megabytes` in all."""
    lines = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if len(line) > 10]
    articles = read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), Stats())
    paragraphs = [p for article in articles for p in article["text"].split("\n") if len(p) > 80]
    rng = random.Random(seed)
    paths = [directory / "sft-a.jsonl", directory / "sft-b.jsonl"]
    target = megabytes * 1_000_000 // len(paths)
    for path in paths:
        written = 0
        with path.open("w", encoding="utf-8") as handle:
            while written < target:
                source = lines if rng.random() < 0.5 else paragraphs
                question = rng.choice(source)[:40]
                answer = "\n".join(rng.choice(source) for _ in range(rng.randint(2, 5)))
                record = {
                    "conversations": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                }
                line = json.dumps(record, ensure_ascii=False) + "\n"
                handle.write(line)
                written += len(line.encode("utf-8"))
    return paths


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--mb", type=int, default=1024, help="size of the generated SFT set")
    parser.add_argument(
        "--reference-share", type=float, default=0.125, help="share of the set the Python-lists reference holds"
    )
    args = parser.parse_args()
    megabytes = 64 if args.quick else args.mb
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_bilingual_corpus(root / "corpus", copies=1)
        train_tokenizer(root / "corpus", root / "tokenizer", TokenizerConfig(vocab_size=6400, max_text_bytes=8_000_000))
        inputs = write_sft_files(root, megabytes)
        size = sum(path.stat().st_size for path in inputs)
        config = ChatDataConfig(max_seq_len=512, shard_units=65536)
        started = time.perf_counter()
        with peak_resident() as stage_memory:
            manifest = chat_data_flow(
                [str(p) for p in inputs], str(root / "tokenizer"), str(root / "sft"), config, str(root / "workspace")
            )
        seconds = time.perf_counter() - started
        stats = manifest["stats"]
        print(f"set: {size / 1e6:.0f} MB jsonl, {stats['rows']:,} conversations, {stats['tokens'] / 1e6:.1f} M tokens")
        print(
            f"chat-data: {seconds:.0f} s, {size / 1e6 / seconds:.1f} MB/s, peak RSS {stage_memory['peak'] / 1e6:.0f} MB"
        )

        train = TrainConfig(seq_len=511, batch_size=16)
        tracemalloc.start()
        kinds_before = resident_kinds()
        with peak_resident() as read_memory:
            data = open_training_data(root / "sft", train)
            batches = 0
            for shard in range(data.shard_count()):
                order = np.random.default_rng(shard).permutation(data.units(shard))
                for index in range(0, data.units(shard) // train.batch_size, 25):
                    data.batch(shard, order, index)
                    batches += 1
        ours = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        growth = {name: (value - kinds_before[name]) / 1e6 for name, value in resident_kinds().items()}
        print(
            f"training reads {batches} batches over {data.shard_count()} shards: peak {ours / 1e6:.1f} MB allocated "
            "(tracemalloc), "
            f"process RSS {read_memory['before'] / 1e6:.0f} -> peak {read_memory['peak'] / 1e6:.0f} MB: "
            f"anonymous {growth['RssAnon']:+.0f} MB, file pages (page cache) {growth['RssFile']:+.0f} MB"
        )

        tracemalloc.start()
        held = []
        for part in manifest["parts"]:
            opened = ChatPart.open(root / "sft" / part["file"], np.dtype(manifest["dtype"]), 1)
            count = int(opened.units * args.reference_share)
            held.append([opened.sequence(row)[0].tolist() for row in range(count)])
            held.append([opened.sequence(row)[1].tolist() for row in range(count)])
        reference = tracemalloc.get_traced_memory()[0] / args.reference_share
        tracemalloc.stop()
        print(
            f"reference, ids and masks as Python lists (the parquet reader's to_pylist): {reference / 1e9:.2f} GB for "
            "the whole set "
            f"(measured on {args.reference_share:.0%}), {reference / ours:.0f}x the memory-mapped reader's peak"
        )
        del held


if __name__ == "__main__":
    main()
