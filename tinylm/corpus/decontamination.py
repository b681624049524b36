"""Decontamination: a document that shares a long n-gram with an evaluation set is dropped, so a benchmark scores
what a model learned rather than what it saw.

The test is GPT-3's and datatrove's: n consecutive units of a benchmark question (13 by default) found anywhere in
the document. Units are words for Latin script and digits, single characters for Chinese (which has no spaces),
after lowercasing and dropping punctuation, so "Which of the following" matches across layout, and 13 Chinese
characters of a CMMLU question match inside a web page that quotes it. A question shorter than n units cannot be
matched this way and is counted as such, not silently passed over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tinylm.storage.benchmark_files import local_tasks, read_rows

_UNITS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+")


def units(text: str) -> list[str]:
    return _UNITS.findall(text.lower())


class EvaluationNgrams:
    """The n-grams of every question of some evaluation sets, each mapped to the set it came from.

    A source is a benchmark folder `tinylm eval` reads (every subject's scored and few-shot files), named by the
    folder, or a text file whose non-empty lines are the texts, named by the file's stem.
    """

    def __init__(self, sources: Iterable[str | Path], ngram: int) -> None:
        self.ngram = ngram
        self.owner: dict[str, str] = {}
        self.unmatchable: dict[str, int] = {}  # per set, its questions shorter than n units
        for source in map(Path, sources):
            for text in _texts(source):
                found = units(text)
                if len(found) < ngram:
                    self.unmatchable[source.stem] = self.unmatchable.get(source.stem, 0) + 1
                    continue
                for start in range(len(found) - ngram + 1):
                    self.owner.setdefault(" ".join(found[start : start + ngram]), source.stem)

    def benchmark_in(self, text: str) -> str | None:
        """The evaluation set one of whose n-grams `text` contains, or None."""
        if not self.owner:
            return None
        found = units(text)
        for start in range(len(found) - self.ngram + 1):
            owner = self.owner.get(" ".join(found[start : start + self.ngram]))
            if owner is not None:
                return owner
        return None


def source_files(source: Path) -> list[Path]:
    """The files of one source: a benchmark folder's scored and few-shot files, or the text file itself."""
    if source.is_dir():
        return [path for task in local_tasks(source) for path in filter(None, (task.scored, task.fewshot))]
    if not source.is_file():
        raise FileNotFoundError(f"decontaminate: {source} is neither a benchmark folder nor a text file")
    return [source]


def _texts(source: Path) -> Iterable[str]:
    if source.is_dir():
        for task in local_tasks(source):
            for path in filter(None, (task.scored, task.fewshot)):
                yield from (str(row.get(task.question) or "") for row in read_rows(path))
        return
    yield from (line for line in source_files(source)[0].read_text(encoding="utf-8").splitlines() if line.strip())
