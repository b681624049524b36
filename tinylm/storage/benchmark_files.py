"""Benchmark folders as the datasets ship them, read without the harness: C-Eval (`dev/<subject>_dev.csv`,
`val/<subject>_val.csv`; its test split has no answers, so `val/` is scored when present), CMMLU (`dev/<subject>.csv`,
`test/<subject>.csv`) or flat (`<subject>.csv`), in csv or jsonl with columns `question`, `A`, `B`, ... and `answer`
(any case).

An on-disk format like the others here: evaluation scores these files, and the corpus stage drops documents that
contain their questions (decontamination), so both read them the same way.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    rows = read_rows(path)
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


def read_rows(path: Path) -> list[dict[str, Any]]:
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
