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

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.config import EvalConfig

CHOICE_LETTERS = "ABCDEFGH"
SPLIT_SUFFIXES = ("_dev", "_val", "_test")
SCORED_FOLDERS = ("val", "test")  # C-Eval's test split is unlabelled: its val split is what gets scored
FORMATS = {".csv": "csv", ".jsonl": "json"}


@dataclass(frozen=True)
class LocalTask:
    """One subject of a local benchmark: the file scored, its few-shot file, and the columns they use."""

    benchmark: str
    subject: str
    scored: Path
    fewshot: Path | None
    question: str
    choices: tuple[str, ...]
    answer: str

    @property
    def name(self) -> str:
        return f"{self.benchmark}/{self.subject}"

    @property
    def harness_name(self) -> str:
        return re.sub(r"[^0-9a-z_]+", "_", f"tinylm_{self.benchmark}_{self.subject}".lower())


def subject_of(path: Path) -> str:
    stem = path.name.removesuffix(path.suffix)
    return next((stem.removesuffix(suffix) for suffix in SPLIT_SUFFIXES if stem.endswith(suffix)), stem)


def _data_files(folder: Path) -> list[Path]:
    return (
        sorted(path for path in folder.iterdir() if path.suffix in FORMATS and path.is_file())
        if folder.is_dir()
        else []
    )


def local_tasks(folder: Path) -> list[LocalTask]:
    """The subjects of a benchmark folder, each with its few-shot file when `dev/` (or `<subject>_dev`) has one."""
    scored_folder = next((folder / name for name in SCORED_FOLDERS if _data_files(folder / name)), folder)
    dev_folder = folder / "dev" if (folder / "dev").is_dir() else folder
    dev_files = {
        subject_of(path): path for path in _data_files(dev_folder) if dev_folder != folder or path.stem.endswith("_dev")
    }
    scored = [path for path in _data_files(scored_folder) if path not in dev_files.values()]
    if not scored:
        raise ValueError(f"benchmark {folder} holds no .csv or .jsonl questions (directly, or in val/ or test/)")
    tasks = []
    for path in scored:
        question, choices, answer = _columns(path)
        tasks.append(
            LocalTask(folder.name, subject_of(path), path, dev_files.get(subject_of(path)), question, choices, answer)
        )
    return tasks


def _columns(path: Path) -> tuple[str, tuple[str, ...], str]:
    """The question, choice and answer columns, and every row checked: a bad answer is named with its file and row."""
    rows = _read_rows(path)
    header = list(rows[0]) if rows else []
    by_lower = {name.lower(): name for name in header}
    choices = tuple(by_lower[letter.lower()] for letter in CHOICE_LETTERS if letter.lower() in by_lower)
    if "question" not in by_lower or "answer" not in by_lower or len(choices) < 2:
        raise ValueError(
            f"{path}: expected columns question, A, B, ... and answer (any case); found {', '.join(header) or 'none'}"
        )
    question, answer = by_lower["question"], by_lower["answer"]
    letters = [name.upper() for name in choices]
    for number, row in enumerate(rows, start=1):
        given = str(row.get(answer) or "").strip().upper()
        if not given:
            raise ValueError(f"{path}: row {number} has no answer (C-Eval's test split has none: score its val/ split)")
        if given not in letters:
            raise ValueError(f"{path}: row {number} has answer {row.get(answer)!r}, not one of {', '.join(letters)}")
    return question, choices, answer


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix == ".csv":
            return list(csv.DictReader(handle))
        rows = []
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {number} is not JSON ({error.msg}); fix or remove it") from error
        return rows


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
