"""The figures README and the manual quote for `make demo` are the ones the demo gives: its config run as the
pipeline, here.

The demo is deterministic on one machine; other CPUs round differently in their floating-point
kernels, so the manual states the tolerance each figure holds to, and this test holds it to that."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tinylm.config import PipelineConfig, load_yaml
from tinylm.evaluation.leaderboard import leaderboard
from tinylm.flows.pipeline import pipeline_flow

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    path.name: path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}
pytestmark = pytest.mark.slow


def quoted(pattern: str, page: str = "evaluation.md") -> list[str]:
    found = re.search(pattern, PAGES[page])
    assert found, f"{page} no longer quotes {pattern!r}"
    return [group.replace(",", "") for group in found.groups()]


def test_the_demo_gives_the_figures_readme_quotes(prefect_api, workspace):
    config = load_yaml(ROOT / "configs" / "demo.yaml", PipelineConfig)
    config = config.model_copy(
        update={
            "workspace": str(workspace),
            "inputs": [str(ROOT / path) for path in config.inputs],
            "eval": config.eval.model_copy(
                update={
                    "perplexity_data": [str(ROOT / path) for path in config.eval.perplexity_data],
                    "benchmarks": [str(ROOT / path) for path in config.eval.benchmarks],
                }
            ),
        }
    )
    result = pipeline_flow(config)

    (loss,) = quoted(r"the same final loss every time on one machine\s+\(([\d.]+)", "README.md")
    assert quoted(r"the same final loss every time on one machine\s+\(([\d.]+)", "install.md") == [loss]
    assert result["final_loss"] == pytest.approx(float(loss), rel=0.01)
    rows = {row["data"]: row for row in result["eval"]["perplexity"] if row["group"] == "all"}
    shards_tokens, shards_ppl = quoted(
        r"\| the demo shards' validation split \(enwiki \+ Zuozhuan\) \| ([\d,]+) tokens \| ([\d.]+) \|"
    )
    assert rows["shards/demo"]["tokens"] == int(shards_tokens)
    assert rows["shards/demo"]["perplexity"] == pytest.approx(float(shards_ppl), rel=0.05)
    unseen_tokens, unseen_ppl = quoted(
        r"\| `us-constitution-zhs.txt` \(Chinese the model never saw\) \| ([\d,]+) tokens \| ([\d.]+) \|"
    )
    assert rows["us-constitution-zhs.txt"]["tokens"] == int(unseen_tokens)
    assert rows["us-constitution-zhs.txt"]["perplexity"] == pytest.approx(float(unseen_ppl), rel=0.05)
    pooled = {row["task"]: row for row in result["eval"]["benchmarks"] if row["level"] == "benchmark"}
    (questions,) = quoted(r"\| CMMLU excerpt \(`tests/data/cmmlu`, 2 subjects\) \| (\d+) questions \|")
    assert pooled["cmmlu"]["items"] == int(questions)
    (questions,) = quoted(r"\| C-Eval subjects \(`tests/data/ceval`, 4 subjects\) \| (\d+) questions \|")
    assert pooled["ceval"]["items"] == int(questions)
    # README's leaderboard is the demo's: the same layout and items, accuracies within two items in a hundred.
    printed = leaderboard(result["eval"]["benchmarks"]).splitlines()
    quoted_table = re.search(r"--table\n(.*?)\n\n", PAGES["README.md"], re.S).group(1).splitlines()
    assert [line.split()[0] for line in quoted_table] == [line.split()[0] for line in printed[: len(quoted_table)]]
    for quoted_line, printed_line in zip(quoted_table[1:], printed[1:]):
        *quoted_scores, quoted_items = quoted_line.split()[1:]
        *printed_scores, printed_items = printed_line.split()[1:]
        assert quoted_items == printed_items
        assert [float(x) for x in quoted_scores] == pytest.approx([float(x) for x in printed_scores], abs=0.02)
