"""Benchmark folders as the datasets ship them, read without the harness: C-Eval (`dev/<subject>_dev.csv` with its
`explanation` column, `val/<subject>_val.csv` without; its test split has no answers, so `val/` is scored when
present), CMMLU (`dev/<subject>.csv`, `test/<subject>.csv`, an unnamed index column, `Answer` capitalised) or flat
(`<subject>.csv`), in csv or jsonl with columns `question`, `A`, `B`, ... and `answer` (any case; other columns
are ignored). Quoted csv fields may span lines (code, formulas, reading passages), as they do in C-Eval.

An on-disk format like the others here: evaluation scores these files, and the corpus stage drops documents that
contain their questions (decontamination), so both read them the same way. Every file is checked whole when it is
read, so a bad item is one line naming its file, row and column rather than an error deep inside the harness.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CHOICE_LETTERS = "ABCDEFGH"
SPLIT_SUFFIXES = ("_dev", "_val", "_test")
SCORED_FOLDERS = ("val", "test")  # C-Eval's test split is unlabelled: its val split is what gets scored
FORMATS = {".csv": "csv", ".jsonl": "json"}
Layout = Literal["ceval", "cmmlu", "flat"]


@dataclass(frozen=True)
class LocalTask:
    """One subject of a local benchmark: the file scored, its few-shot file, and the columns they use."""

    benchmark: str
    subject: str
    layout: Layout
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

    @property
    def letters(self) -> list[str]:
        return [name.upper() for name in self.choices]


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
    layout = _layout(folder, scored)
    tasks = []
    for path in scored:
        question, choices, answer = _columns(path)
        fewshot = dev_files.get(subject_of(path))
        if fewshot is not None:
            _columns(fewshot)
        tasks.append(LocalTask(folder.name, subject_of(path), layout, path, fewshot, question, choices, answer))
    return tasks


def _layout(folder: Path, scored: list[Path]) -> Layout:
    if any(path.stem.endswith(("_val", "_test")) for path in scored):
        return "ceval"
    return "cmmlu" if scored[0].parent.name == "test" and (folder / "dev").is_dir() else "flat"


def _columns(path: Path) -> tuple[str, tuple[str, ...], str]:
    """The question, choice and answer columns, every row checked: a bad answer is named with its file, row and
    column."""
    rows = read_rows(path)
    header = list(rows[0]) if rows else []
    by_lower = {name.lower(): name for name in header if name}
    choices = tuple(by_lower[letter.lower()] for letter in CHOICE_LETTERS if letter.lower() in by_lower)
    missing = [name for name in ("question", "answer") if name not in by_lower] + (["A, B"] if len(choices) < 2 else [])
    if missing:
        unlabelled = " (C-Eval's test split ships without answers: score its val/ split)" if "answer" in missing else ""
        raise ValueError(
            f"{path}: no column {' or '.join(missing)}; expected question, A, B, ... and answer (any case), "
            f"found {', '.join(header) or 'none'}{unlabelled}"
        )
    question, answer = by_lower["question"], by_lower["answer"]
    letters = [name.upper() for name in choices]
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}, column {answer}"
        given = str(row.get(answer) or "").strip().upper()
        if not given:
            raise ValueError(f"{where}: no answer (C-Eval's test split has none: score its val/ split)")
        if given and given not in letters:
            raise ValueError(f"{where}: answer {row.get(answer)!r} is not one of {', '.join(letters)}")
        if not str(row.get(question) or "").strip():
            raise ValueError(f"{path}: row {number}, column {question}: the question is empty")
    return question, choices, answer


def task_rows(task: LocalTask, path: Path) -> list[dict[str, str]]:
    """A subject's items under one set of names, whatever the file calls its columns: `question`, `A`, `B`, ...,
    `answer` (upper case) and `explanation` (C-Eval's worked answer; empty where the file has none)."""
    rows = read_rows(path)
    explanation = next((name for name in (rows[0] if rows else {}) if name and name.lower() == "explanation"), None)
    return [
        {
            "question": str(row[task.question]).strip(),
            **{letter: str(row.get(column) or "") for letter, column in zip(task.letters, task.choices)},
            "answer": str(row.get(task.answer) or "").strip().upper(),
            "explanation": str(row.get(explanation) or "").strip() if explanation else "",
        }
        for row in rows
    ]


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle)
            try:
                return list(reader)
            except csv.Error as error:
                problem = f"{path}: line {reader.line_num} is not valid csv ({error})"
                raise ValueError(f"{problem}; fix or remove it") from error
        rows = []
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {number} is not JSON ({error.msg}); fix or remove it") from error
        return rows
