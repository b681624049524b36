"""Benchmarks through EleutherAI's lm-evaluation-harness, run on the model exported as a Hugging Face folder.

The harness is how this field reports C-Eval, CMMLU, HellaSwag and the like; scoring it
through the exported folder measures the model exactly as others will load it. Its own
C-Eval and CMMLU tasks download their data from the Hugging Face Hub; the local tasks
here are the same multiple-choice format read from files the user has (`storage/benchmark_files.py`
reads and checks them; the harness gets the rows, never the files, so a folder the `datasets` csv
builder would refuse, C-Eval's dev and val with different columns, scores as it ships). Each subject
becomes one harness task with the prompt of the harness's own CMMLU and C-Eval tasks, or C-Eval's own
chain-of-thought prompt, and the scores are reported per subject, per leaderboard category and per
benchmark, each average taken over subjects as C-Eval's and CMMLU's own code takes it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tinylm.config import EvalConfig
from tinylm.evaluation.subjects import categories, subject_name
from tinylm.storage.benchmark_files import LocalTask, local_tasks, task_rows

# C-Eval's chain-of-thought format (its evaluators' format_example): the reasoning opens with these words, a
# worked example ends with the conclusion, and the conclusion's letter is what gets scored.
THINK = "让我们一步一步思考，\n"
CONCLUSION = "所以答案是"
# The ways C-Eval's evaluators find the letter a model concluded with, most of them in one pattern (the harness's
# regex filter keeps the first non-empty group of the first match).
CONCLUDED_LETTER = r"答案(?:应该)?[是为选]?\s?[：:]?\s?([A-H])|所以答?\s?([A-H])|选择\s?([A-H])|([A-H])\s?是正确"


def _dataset(task: LocalTask, **_: Any) -> Any:
    """The subject's rows as a DatasetDict (`test`: scored, `dev`: few-shot), for the harness's custom_dataset."""
    import datasets

    splits = {"test": task.scored} | ({"dev": task.fewshot} if task.fewshot else {})
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(task_rows(task, path)) for split, path in splits.items()}
    )


def _question(task: LocalTask) -> str:
    if task.inline_choices:  # GAOKAO-Bench writes the choices into the question
        return "{{question}}\n"
    options = "\n".join(f"{letter}. {{{{{letter}}}}}" for letter in task.letters)
    return f"{{{{question}}}}\n{options}\n"


def _description(task: LocalTask) -> str:
    """The header of the harness's own task for the benchmark: MMLU's in English, C-Eval's naming a Chinese exam,
    GAOKAO-Bench's the gaokao, CMMLU's plainly."""
    if task.layout == "mmlu":
        return f"The following are multiple choice questions (with answers) about {subject_name(task)}.\n\n"
    where = {"ceval": "中国关于", "gaokao": "中国高考"}.get(task.layout, "关于")
    return f"以下是{where}{subject_name(task)}的单项选择题，请直接给出正确答案的选项。\n\n"


def task_config(task: LocalTask, config: EvalConfig) -> dict[str, Any]:
    """The harness's task config for one subject: the prompt and metrics of its CMMLU and C-Eval tasks, or C-Eval's
    chain of thought."""
    fewshot = {"fewshot_split": "dev"} if task.fewshot else {}
    common = {
        "task": task.harness_name,
        "custom_dataset": functools.partial(_dataset, task),
        "test_split": "test",
        **fewshot,
        "num_fewshot": config.num_fewshot,
        "metadata": {"version": 1.0},
    }
    if config.prompt == "chain_of_thought":
        return common | _chain_of_thought(task, config, bool(fewshot))
    answer_prompt = "Answer:" if task.layout == "mmlu" else config.answer_prompt  # as the harness's MMLU asks
    return common | {
        "description": _description(task),
        **({"fewshot_config": {"sampler": "first_n"}} if fewshot else {}),
        "output_type": "multiple_choice",
        "doc_to_text": f"{_question(task)}{answer_prompt}",
        "doc_to_choice": task.letters,
        "doc_to_target": f"{{{{{task.letters}.index(answer)}}}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def _chain_of_thought(task: LocalTask, config: EvalConfig, fewshot: bool) -> dict[str, Any]:
    """C-Eval's chain-of-thought prompt: worked examples (the dev files' explanation, then 所以答案是X。), the question
    opened with 让我们一步一步思考，1., and the letter of the model's conclusion matched against the answer."""
    shown = {
        "sampler": "first_n",
        "doc_to_text": f"{_question(task)}{config.answer_prompt}{THINK}",
        "doc_to_target": f"{{{{explanation}}}}\n{CONCLUSION}{{{{answer}}}}。",
        "target_delimiter": "",
    }
    return {
        "description": f"以下是中国关于{subject_name(task)}考试的单项选择题，请选出其中的正确答案。\n\n",
        **({"fewshot_config": shown} if fewshot else {}),
        "fewshot_delimiter": "\n\n",
        "output_type": "generate_until",
        "doc_to_text": f"{_question(task)}{config.answer_prompt}{THINK}1.",
        "doc_to_target": "{{answer}}",
        "target_delimiter": "",
        "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": config.max_new_tokens, "do_sample": False},
        "filter_list": [
            {
                "name": "concluded",
                "filter": [{"function": "regex", "regex_pattern": CONCLUDED_LETTER}, {"function": "take_first"}],
            }
        ],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }


def split_benchmarks(config: EvalConfig) -> tuple[list[LocalTask], list[str]]:
    """The subjects of the local benchmark folders, each read and checked, and the harness task names."""
    local = [task for entry in config.benchmarks if Path(entry).is_dir() for task in local_tasks(Path(entry))]
    return local, [entry for entry in config.benchmarks if not Path(entry).is_dir()]


def check_settings(config: EvalConfig) -> tuple[list[LocalTask], list[str]]:
    """The benchmarks, and what the settings ask of them checked before a model is loaded: one line naming what to
    change."""
    tasks, named = split_benchmarks(config)
    if config.num_fewshot and (missing := [task.name for task in tasks if task.fewshot is None]):
        raise ValueError(
            f"num_fewshot {config.num_fewshot} needs few-shot examples, but {', '.join(missing)} have no dev file"
        )
    if config.prompt != "chain_of_thought":
        return tasks, named
    if english := sorted({task.benchmark for task in tasks if task.layout == "mmlu"}):
        raise ValueError(
            f"prompt chain_of_thought is C-Eval's Chinese prompt; {', '.join(english)} (MMLU) is scored with "
            "prompt answer_only, as the harness's MMLU is: evaluate it in a separate run"
        )
    if named:
        raise ValueError(
            f"prompt chain_of_thought applies to local benchmark folders; {', '.join(named)} are harness tasks with "
            "their own prompts: evaluate them in a separate run with prompt answer_only"
        )
    for task in tasks if config.num_fewshot else []:
        if task.fewshot and not all(row["explanation"] for row in task_rows(task, task.fewshot)[: config.num_fewshot]):
            raise ValueError(
                f"{task.fewshot}: prompt chain_of_thought shows worked examples, but its first "
                f"{config.num_fewshot} rows lack an explanation column or value (C-Eval's dev files have one); "
                "use num_fewshot 0 or prompt answer_only"
            )
    return tasks, named


def run_benchmarks(hf_folder: Path, config: EvalConfig, device: str) -> list[dict[str, Any]]:
    """One row per subject (benchmark/subject: items, acc, acc_norm, acc_stderr), per leaderboard category and per
    local benchmark, and one per harness task, from lm-evaluation-harness's `simple_evaluate`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    local, named = check_settings(config)
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(hf_folder), "dtype": "bfloat16" if device == "cuda" else "float32"},
        tasks=[task_config(task, config) for task in local] + named,
        num_fewshot=config.num_fewshot if named else None,  # the local tasks carry theirs
        batch_size=config.batch_size,
        device=device,
        limit=config.limit,
        log_samples=False,
        system_instruction=config.system_prompt,
        apply_chat_template=config.apply_chat_template,
        fewshot_as_multiturn=config.apply_chat_template,
        task_manager=TaskManager(include_defaults=bool(named)),
    )
    by_harness_name = {task.harness_name: task for task in local}
    rows = []
    for name, counts in results["n-samples"].items():
        task = by_harness_name.get(name)
        row = _row(task.name if task else name, results["results"][name], counts["effective"])
        if row is not None:
            # Items a local file has that are left out of its score (GAOKAO-Bench's multi-answer ones), counted.
            rows.append(
                row | {"level": "subject" if task else "harness task", "skipped_items": task.skipped if task else 0}
            )
    return rows + _averages(local, {row["task"]: row for row in rows})


def _row(task: str, scores: dict[str, Any], items: int) -> dict[str, Any] | None:
    accuracy = scores.get("acc,none", scores.get("exact_match,concluded"))
    if accuracy is None:
        return None
    stderr = scores.get("acc_stderr,none", scores.get("exact_match_stderr,concluded"))
    return {
        "task": task,
        "items": items,
        "acc": accuracy,
        "acc_norm": scores.get("acc_norm,none", accuracy),
        "acc_stderr": stderr if isinstance(stderr, float) else None,
    }


def _averages(tasks: list[LocalTask], by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each local benchmark's categories (C-Eval's STEM, Social Science, Humanities, Other; CMMLU's and China
    specific), then the benchmark: the mean over their subjects, as the two benchmarks' own code averages."""
    rows = []
    for benchmark in sorted({task.benchmark for task in tasks}):
        subjects = [task for task in tasks if task.benchmark == benchmark and task.name in by_name]
        groups = sorted({category for task in subjects for category in categories(task)})
        for category in groups:
            members = [by_name[task.name] for task in subjects if category in categories(task)]
            rows.append(_average(f"{benchmark}/{category}", "category", members))
        rows.append(_average(benchmark, "benchmark", [by_name[task.name] for task in subjects]))
    return rows


def _average(name: str, level: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "task": name,
        "items": sum(row["items"] for row in rows),
        "acc": sum(row["acc"] for row in rows) / len(rows),
        "acc_norm": sum(row["acc_norm"] for row in rows) / len(rows),
        "acc_stderr": None,
        "level": level,
        "skipped_items": sum(row["skipped_items"] for row in rows),
    }
