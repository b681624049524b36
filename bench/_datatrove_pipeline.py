"""datatrove's corpus pipeline, as its MinHash example runs it, for bench/datatrove.py (not a benchmark itself).

Runs in its own environment (.venv-datatrove: `make .venv-datatrove`), since datatrove's
fastText wheel installs a `fasttext` module over the one tinylm reads its language model
with. Reads jsonl files from INPUT, writes the kept documents to WORK/output, and prints
one JSON line of per-stage seconds and document counts.

    .venv-datatrove/bin/python bench/_datatrove_pipeline.py INPUT WORK --executor local|ray --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
)
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def executor(kind: str, pipeline: list, tasks: int, workers: int, logs: Path):
    if kind == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs), mem_per_cpu_gb=1)
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.executor == "ray":
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False)
    files = len(list(args.input.glob("*.jsonl")))
    config = MinhashConfig()  # 14 buckets of 8 hashes, 5-grams: datatrove's defaults
    work, logs = args.work, args.work / "logs"
    stages = {
        "read+filter": (
            [
                JsonlReader(str(args.input)),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                JsonlWriter(str(work / "filtered")),
            ],
            files,
        ),
        "signatures": (
            [JsonlReader(str(work / "filtered")), MinhashDedupSignature(str(work / "signatures"), config=config)],
            files,
        ),
        "buckets": (
            [MinhashDedupBuckets(str(work / "signatures"), str(work / "buckets"), config=config)],
            config.num_buckets,
        ),
        "cluster": ([MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=config)], 1),
        "filter+write": (
            [
                JsonlReader(str(work / "filtered")),
                MinhashDedupFilter(str(work / "remove_ids")),
                JsonlWriter(str(work / "output")),
            ],
            files,
        ),
    }
    seconds = {}
    for name, (pipeline, tasks) in stages.items():
        started = time.perf_counter()
        executor(args.executor, pipeline, tasks, args.workers, logs / name).run()
        seconds[name] = time.perf_counter() - started
    kept = sum(1 for path in (work / "output").rglob("*.jsonl*") for _ in _lines(path))
    filtered = sum(1 for path in (work / "filtered").rglob("*.jsonl*") for _ in _lines(path))
    print(json.dumps({"seconds": seconds, "after_filters": filtered, "kept": kept}))


def _lines(path: Path):
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        yield from handle


if __name__ == "__main__":
    main()
