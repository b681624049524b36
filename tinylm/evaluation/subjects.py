"""The subjects of C-Eval, CMMLU, MMLU and GAOKAO-Bench: each one's name (their prompts name the subject) and the
categories their leaderboards report (C-Eval and MMLU: STEM, Social Science, Humanities, Other; CMMLU: those and
China specific; GAOKAO-Bench: the exam subject).

`subjects.json` is read off the benchmarks' own repositories: C-Eval's `subject_mapping.json` (hkust-nlp/ceval
@ cba65ae), CMMLU's `src/categories.py` (haonan-li/CMMLU @ d6e7b71) and MMLU's `categories.py` (hendrycks/test
@ 4450500), whose subcategories are resolved to the categories that list them; GAOKAO-Bench's files by the subject
its `OBJ_score_evaluation.py` (OpenLMLab/GAOKAO-Bench @ 6dbb24f) counts them in.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tinylm.storage.benchmark_files import LocalTask


@functools.cache
def _subjects() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads((Path(__file__).parent / "subjects.json").read_text(encoding="utf-8"))


def _entry(task: LocalTask) -> dict[str, Any] | None:
    return _subjects().get(task.layout, {}).get(task.subject)


def subject_name(task: LocalTask) -> str:
    """How the prompt names the subject: its Chinese name for C-Eval's and CMMLU's, else the file's subject."""
    entry = _entry(task)
    return entry["name"] if entry else task.subject.replace("_", " ")


def categories(task: LocalTask) -> list[str]:
    """The leaderboard categories the subject counts in (none for a subject the benchmark does not list)."""
    entry = _entry(task)
    return list(entry["categories"]) if entry else []
