"""The subjects of C-Eval and CMMLU: each one's Chinese name (their prompts name the subject) and the categories
their leaderboards report (C-Eval: STEM, Social Science, Humanities, Other; CMMLU: those and China specific).

`subjects.json` is read off the benchmarks' own repositories: C-Eval's `subject_mapping.json` (hkust-nlp/ceval
@ cba65ae) and CMMLU's `src/categories.py` (haonan-li/CMMLU @ d6e7b71), whose subcategories are resolved to the
categories that list them.
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
