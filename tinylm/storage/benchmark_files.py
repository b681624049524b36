"""Benchmark folders as the datasets ship them, read without the harness: C-Eval (`dev/<subject>_dev.csv` with its
`explanation` column, `val/<subject>_val.csv` without; its test split has no answers, so `val/` is scored), CMMLU
(`dev/<subject>.csv`, `test/<subject>.csv`, an unnamed index column, `Answer` capitalised), MMLU (`dev/`, `val/`,
`test/<subject>_test.csv` without a header row: question, the choices, the answer; `test/` is scored) or flat
(`<subject>.csv`), in csv or jsonl with columns `question`, `A`, `B`, ... and `answer` (any case; other columns
are ignored); or GAOKAO-Bench (`<years>_<subject>_MCQs.json`: an object whose `example` list holds questions with
their choices written into the text and `answer` a list of letters). Quoted csv fields may span lines (code,
formulas, reading passages), as they do in C-Eval.

GAOKAO-Bench items with more than one answer (a multi-select physics question, a reading passage's several
questions) are left out of the score and counted (`LocalTask.skipped`); a file with none other is left out and said
so in the log.

An on-disk format like the others here: evaluation scores these files, and the corpus stage drops documents that
contain their questions (decontamination), so both read them the same way. Every file is checked whole when it is
read, so a bad item is one line naming its file, row and column rather than an error deep inside the harness.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CHOICE_LETTERS = "ABCDEFGH"
GAOKAO_LETTERS = ("A", "B", "C", "D")  # every single-answer item of GAOKAO-Bench's objective files
SPLIT_SUFFIXES = ("_dev", "_val", "_test")
FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "gaokao"}
Layout = Literal["ceval", "cmmlu", "mmlu", "gaokao", "flat"]
_LOG = logging.getLogger(__name__)


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
    skipped: int = 0  # items left out of the score (GAOKAO-Bench's multi-answer ones)

    @property
    def inline_choices(self) -> bool:
        """Whether the choices are written into the question (GAOKAO-Bench) rather than given one per column."""
        return self.layout == "gaokao"

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


def _scored_folder(folder: Path) -> Path:
    """Where the scored items are: `test/` when it holds answers (CMMLU, MMLU), else `val/` (C-Eval, whose test
    split ships without them), else the folder itself."""
    test, val = _data_files(folder / "test"), _data_files(folder / "val")
    if test and (not val or _labelled(test[0])):
        return folder / "test"
    return folder / "val" if val else folder


def _labelled(path: Path) -> bool:
    rows = read_rows(path)
    answer = next((name for name in (rows[0] if rows else {}) if name and name.lower() == "answer"), None)
    return answer is not None and bool(str(rows[0].get(answer) or "").strip())


def local_tasks(folder: Path) -> list[LocalTask]:
    """The subjects of a benchmark folder, each with its few-shot file when `dev/` (or `<subject>_dev`) has one."""
    scored_folder = _scored_folder(folder)
    dev_folder = folder / "dev" if (folder / "dev").is_dir() else folder
    dev_files = {
        subject_of(path): path for path in _data_files(dev_folder) if dev_folder != folder or path.stem.endswith("_dev")
    }
    scored = [path for path in _data_files(scored_folder) if path not in dev_files.values()]
    if not scored:
        raise ValueError(
            f"benchmark {folder} holds no .csv, .jsonl or GAOKAO-Bench .json questions (directly, or in val/ or test/)"
        )
    layout = _layout(folder, scored)
    tasks = []
    for path in scored:
        question, choices, answer, skipped, items = _columns(path)
        if layout == "gaokao" and skipped == items:
            _LOG.warning("%s: left out: all its %d items have more than one answer", path, skipped)
            continue
        fewshot = dev_files.get(subject_of(path))
        if fewshot is not None:
            _columns(fewshot)
        tasks.append(
            LocalTask(folder.name, subject_of(path), layout, path, fewshot, question, choices, answer, skipped)
        )
    return tasks


def _layout(folder: Path, scored: list[Path]) -> Layout:
    if scored[0].suffix == ".json":
        return "gaokao"
    if scored[0].suffix == ".csv" and _headerless(scored[0]) is not None:
        return "mmlu"
    if any(path.stem.endswith(("_val", "_test")) for path in scored):
        return "ceval"
    return "cmmlu" if scored[0].parent.name == "test" and (folder / "dev").is_dir() else "flat"


def _columns(path: Path) -> tuple[str, tuple[str, ...], str, int, int]:
    """The question, choice and answer columns, the items left out (GAOKAO-Bench's multi-answer ones) and all the
    items, every row checked: a bad answer is named with its file, row and column."""
    rows = read_rows(path)
    header = list(rows[0]) if rows else []
    by_lower = {name.lower(): name for name in header if name}
    choices = tuple(by_lower[letter.lower()] for letter in CHOICE_LETTERS if letter.lower() in by_lower)
    if path.suffix == ".json":
        choices = GAOKAO_LETTERS
    missing = [name for name in ("question", "answer") if name not in by_lower] + (["A, B"] if len(choices) < 2 else [])
    if missing:
        unlabelled = " (C-Eval's test split ships without answers: score its val/ split)" if "answer" in missing else ""
        raise ValueError(
            f"{path}: no column {' or '.join(missing)}; expected question, A, B, ... and answer (any case), "
            f"found {', '.join(header) or 'none'}{unlabelled}"
        )
    question, answer = by_lower["question"], by_lower["answer"]
    letters = [name.upper() for name in choices]
    skipped = 0
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}, column {answer}"
        given = str(row.get(answer) or "").strip().upper()
        if not given:
            raise ValueError(f"{where}: no answer (C-Eval's test split has none: score its val/ split)")
        if not _single_answer(row):
            skipped += 1
            continue
        if given not in letters:
            raise ValueError(f"{where}: answer {row.get(answer)!r} is not one of {', '.join(letters)}")
        if not str(row.get(question) or "").strip():
            raise ValueError(f"{path}: row {number}, column {question}: the question is empty")
    return question, choices, answer, skipped, len(rows)


def _single_answer(row: dict[str, Any]) -> bool:
    """False for a GAOKAO-Bench item with several answers (its `answers` list says how many), True otherwise."""
    answers = row.get("answers")
    return answers is None or (len(answers) == 1 and len(str(answers[0]).strip()) == 1)


def task_rows(task: LocalTask, path: Path) -> list[dict[str, str]]:
    """A subject's items under one set of names, whatever the file calls its columns: `question`, `A`, `B`, ...,
    `answer` (upper case) and `explanation` (C-Eval's worked answer; empty where the file has none)."""
    rows = [row for row in read_rows(path) if _single_answer(row)]
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
    """A benchmark file's items as dicts: csv (with its header row, or MMLU's without one), jsonl, or GAOKAO-Bench's
    JSON (`question`, `answer` its letters joined, `answers` the list, `analysis` as `explanation`)."""
    if path.suffix == ".json":
        return _gaokao_rows(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle, fieldnames=_headerless(path))
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


def _headerless(path: Path) -> list[str] | None:
    """MMLU's column names for a csv that has no header row (its first row is an item: no `question` or `answer`
    column, and a letter last), else None."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            first = next(csv.reader(handle), [])
        except csv.Error:
            return None
    names = {cell.strip().lower() for cell in first}
    if {"question", "answer"} & names or len(first) < 4 or first[-1].strip().upper() not in CHOICE_LETTERS:
        return None
    return ["question", *CHOICE_LETTERS[: len(first) - 2], "answer"]


def _gaokao_rows(path: Path) -> list[dict[str, Any]]:
    try:
        items = json.loads(path.read_text(encoding="utf-8")).get("example")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{path}: not a GAOKAO-Bench file ({error}); fix or remove it") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{path}: no `example` list of questions, as GAOKAO-Bench's files have; fix or remove it")
    rows = []
    for item in items:
        answers = item.get("answer") if isinstance(item.get("answer"), list) else [item.get("answer")]
        rows.append(
            {
                "question": item.get("question"),
                "answer": "".join(str(answer or "") for answer in answers),
                "answers": answers,
                "explanation": item.get("analysis") or "",
            }
        )
    return rows
