"""Evaluation speed: tinylm's perplexity against lm-evaluation-harness's rolling log-likelihood on the same text
and model, and the local CMMLU excerpt through the harness.

    .venv/bin/python bench/eval.py [--kb 48]

One document of `--kb` KB of Zuozhuan (a one-record jsonl file) is scored twice: by `tinylm
eval`'s perplexity (windows of the model's 1024 tokens in batches of 8, tinylm's model) and
by the harness's `loglikelihood_rolling` on the exported Hugging Face folder (the same
disjoint windows, batch 8, transformers' Llama), the reference way. The two must agree on
bits per byte. Then the CMMLU items in tests/data (2 subjects x 20 questions x 4 choices)
go through the harness as `tinylm eval --benchmark` runs them. MiniMind2-Small shape with
random weights (`_checkpoint.py`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import lm_eval
import torch
from _checkpoint import write_checkpoint
from _cli import bench_parser
from _corpus import DATA
from lm_eval.tasks import TaskManager

from tinylm.config import EvalConfig
from tinylm.evaluation.benchmarks import run_benchmarks
from tinylm.evaluation.perplexity import perplexity
from tinylm.export.hf import export_hf
from tinylm.inference.generate import load_model

CMMLU = Path(__file__).resolve().parents[1] / "tests" / "data" / "cmmlu"


def harness_bits_per_byte(folder: Path, document: Path) -> dict[str, float]:
    task = {
        "task": "bench_rolling",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(document)}},
        "test_split": "test",
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}],
    }
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(folder), "dtype": "float32"},
        tasks=[task],
        batch_size=8,
        device="cpu",
        log_samples=False,
        task_manager=TaskManager(include_defaults=False),
    )
    return results["results"]["bench_rolling"]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--kb", type=int, default=48, help="KB of Zuozhuan in the scored document")
    args = parser.parse_args()
    if args.quick:
        args.kb = 4
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        checkpoint = write_checkpoint(root)
        folder = export_hf(checkpoint, root / "hf")
        text = (DATA / "zuozhuan-zhs.txt").read_bytes()[: args.kb * 1024].decode("utf-8", errors="ignore")
        document = root / "zuozhuan.jsonl"
        document.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")

        loaded = load_model(str(checkpoint))
        started = time.perf_counter()
        ours = perplexity(loaded, document, EvalConfig(max_tokens=10**9, batch_size=8), torch.device("cpu"))["all"]
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = harness_bits_per_byte(folder, document)
        theirs_s = time.perf_counter() - started
        started = time.perf_counter()
        rows = run_benchmarks(folder, EvalConfig(benchmarks=[str(CMMLU)]), "cpu")
        bench_s = time.perf_counter() - started

    tokens = ours["tokens"]
    print(
        f"MiniMind2-Small shape, random weights, CPU threads {torch.get_num_threads()}; {len(text.encode())} bytes, "
        f"{tokens} tokens"
    )
    print(
        f"tinylm perplexity                 {ours_s:6.1f} s  {tokens / ours_s:7.0f} tokens/s   bits/byte "
        f"{ours['bits_per_byte']:.5f}"
    )
    reference = theirs["bits_per_byte,none"]
    print(
        f"lm-eval loglikelihood_rolling     {theirs_s:6.1f} s  {tokens / theirs_s:7.0f} tokens/s   bits/byte "
        f"{reference:.5f}   tinylm {theirs_s / ours_s:.2f}x faster"
    )
    items = next(row["items"] for row in rows if row["task"] == "cmmlu")
    print(
        f"lm-eval, local CMMLU excerpt      {bench_s:6.1f} s  {items / bench_s:7.1f} questions/s ({items} questions, 4 "
        "choices each)"
    )


if __name__ == "__main__":
    main()
