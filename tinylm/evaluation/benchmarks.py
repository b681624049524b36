"""Benchmarks through EleutherAI's lm-evaluation-harness, run on the model exported as a Hugging Face folder.

The harness is how this field reports C-Eval, CMMLU, HellaSwag and the like; scoring it
through the exported folder measures the model exactly as others will load it. Its own
C-Eval and CMMLU tasks download their data from the Hugging Face Hub; the local tasks
here are the same multiple-choice format read from files the user has: a folder per
benchmark, laid out as CMMLU (`dev/<subject>.csv`, `test/<subject>.csv`) or C-Eval
(`dev/<subject>_dev.csv`, `val/<subject>_val.csv`; its test split has no answers, so `val/`
is scored when present) ships it, or flat (`<subject>.csv`), in csv or jsonl with columns
`question`, `A`, `B`, ... and `answer` (any case). Each subject becomes one harness task
with the prompt of the harness's own CMMLU and C-Eval tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinylm.config import EvalConfig
from tinylm.storage.benchmark_files import FORMATS, LocalTask, local_tasks


def task_config(task: LocalTask, answer_prompt: str, num_fewshot: int = 0) -> dict[str, Any]:
    """The harness's task config for one subject: the prompt and metrics of its CMMLU and C-Eval tasks."""
    letters = [name.upper() for name in task.choices]
    options = "\n".join(f"{letter}. {{{{{column}}}}}" for letter, column in zip(letters, task.choices))
    files = {"test": str(task.scored)} | ({"dev": str(task.fewshot)} if task.fewshot else {})
    return {
        "task": task.harness_name,
        "dataset_path": FORMATS[task.scored.suffix],
        "dataset_kwargs": {"data_files": files},
        "test_split": "test",
        **({"fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"}} if task.fewshot else {}),
        "num_fewshot": num_fewshot,
        "output_type": "multiple_choice",
        "doc_to_text": f"{{{{{task.question}.strip()}}}}\n{options}\n{answer_prompt}",
        "doc_to_choice": letters,
        "doc_to_target": f"{{{{{letters}.index({task.answer}.strip().upper())}}}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def run_benchmarks(hf_folder: Path, config: EvalConfig, device: str) -> list[dict[str, Any]]:
    """One row per task (benchmark/subject: items, acc, acc_norm, acc_stderr) and one per local benchmark
    (its subjects' items pooled), from lm-evaluation-harness's `simple_evaluate`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    local = [task for entry in config.benchmarks if Path(entry).is_dir() for task in local_tasks(Path(entry))]
    named = [entry for entry in config.benchmarks if not Path(entry).is_dir()]
    if config.num_fewshot and (missing := [task.name for task in local if task.fewshot is None]):
        raise ValueError(
            f"num_fewshot {config.num_fewshot} needs few-shot examples, but {', '.join(missing)} have no dev file"
        )
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(hf_folder), "dtype": "bfloat16" if device == "cuda" else "float32"},
        tasks=[task_config(task, config.answer_prompt, config.num_fewshot) for task in local] + named,
        num_fewshot=config.num_fewshot if named else None,  # the local tasks carry theirs
        batch_size=config.batch_size,
        device=device,
        limit=config.limit,
        log_samples=False,
        task_manager=TaskManager(include_defaults=bool(named)),
    )
    names = {task.harness_name: task.name for task in local}
    scored = (
        (names.get(task, task), results["results"][task], counts["effective"])
        for task, counts in results["n-samples"].items()
    )
    rows = [row for row in (_row(*task) for task in scored) if row is not None]
    for benchmark in sorted({task.benchmark for task in local}):
        rows.append(_pooled(benchmark, [row for row in rows if row["task"].startswith(f"{benchmark}/")]))
    return rows


def _row(task: str, scores: dict[str, Any], items: int) -> dict[str, Any] | None:
    if "acc,none" not in scores:
        return None
    stderr = scores.get("acc_stderr,none")
    return {
        "task": task,
        "items": items,
        "acc": scores["acc,none"],
        "acc_norm": scores.get("acc_norm,none", scores["acc,none"]),
        "acc_stderr": stderr if isinstance(stderr, float) else None,
    }


def _pooled(benchmark: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A benchmark's score over all its subjects' items, as CMMLU and C-Eval report their overall accuracy."""
    items = sum(row["items"] for row in rows)
    return {
        "task": benchmark,
        "items": items,
        "acc": sum(row["acc"] * row["items"] for row in rows) / items,
        "acc_norm": sum(row["acc_norm"] * row["items"] for row in rows) / items,
        "acc_stderr": None,
    }
