"""Benchmark scores as C-Eval's and CMMLU's leaderboards print them: a row per benchmark, a column per category,
the average over subjects, then each subject's score; what `tinylm eval --table` prints."""

from __future__ import annotations

from typing import Any

CATEGORY_ORDER = ("STEM", "Social Science", "Humanities", "Other", "China specific")


def leaderboard(rows: list[dict[str, Any]]) -> str:
    """The benchmarks table of an evaluation as aligned text; a benchmark without a category leaves it blank."""
    scores = {row["task"]: row for row in rows}
    benchmarks = [row for row in rows if row.get("level") in ("benchmark", "harness task")]
    present = {row["task"].rsplit("/", 1)[1] for row in rows if row.get("level") == "category"}
    columns = [category for category in CATEGORY_ORDER if category in present]
    header = ["benchmark", *columns, "Average", "items"]
    lines = []
    for benchmark in benchmarks:
        name = benchmark["task"]
        cells = [f"{scores[f'{name}/{c}']['acc']:.3f}" if f"{name}/{c}" in scores else "" for c in columns]
        lines.append([name, *cells, f"{benchmark['acc']:.3f}", str(benchmark["items"])])
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *lines]]
    subjects = [row for row in rows if row.get("level") == "subject"]
    width = max((len(row["task"]) for row in subjects), default=0)
    table += [""] + [f"{row['task']:<{width}}  {row['acc']:.3f}  ({row['items']} items)" for row in subjects]
    return "\n".join(table if subjects else table[:-1])
