"""GRPO's accuracy reward against math-verify used as TRL's `accuracy_reward` uses it, on real reference solutions.

    .venv/bin/python bench/rewards.py [--quick]

For each math excerpt in tests/data (GSM8K, MATH-500, CMATH, the gaokao cloze, Chinese middle-school
answers), every record's answer, as the set ships it, is the reference, and the completion is the
record's worked solution where the set has one (GSM8K's `#### 72`, MATH's `\\boxed{}`), else the answer
in `\\boxed{}`, each blank boxed (what TRL's way needs a completion to write). Each pair is scored once
by tinylm's `accuracy` and once the reference way: math-verify's `parse` of the reference (first match)
and of the completion (boxed LaTeX only, no anchor-free fallback), then `verify`, as TRL's reward does.
A right reward gives every pair 1.0; where TRL's way gives less, it is misreading the set's layout (a
bare `\\frac{}` without `$`, GSM8K's `####`, a bare `1:9`), not the answer.

Printed: the share each gives full marks, and the time per completion of each (the cost
a rollout pays per completion, parsing the reference included: TRL parses it for every completion,
tinylm once per prompt).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _cli import bench_parser
from math_verify import LatexExtractionConfig, parse, verify
from math_verify.parser import NormalizationConfig

from tinylm.training.rewards import accuracy

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
# (name, file, the field holding the answer, the field holding a worked solution when the set has one)
SETS = [
    ("GSM8K", DATA / "gsm8k" / "test-excerpt.jsonl", "answer", None),
    ("MATH-500", DATA / "math" / "math500-excerpt.jsonl", "answer", "solution"),
    ("CMATH", DATA / "math" / "cmath-excerpt.jsonl", "answer", None),
    ("gaokao cloze", DATA / "math" / "gaokao_math_cloze-excerpt.jsonl", "answer", None),
    ("cn middle school", DATA / "math" / "cn_middle_school-excerpt.jsonl", "answer", None),
]
_BOXED_ONLY = LatexExtractionConfig(
    normalization_config=NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True
    ),
    boxed_match_priority=0,
    try_extract_without_anchor=False,
)


def boxed(reference: str) -> str:
    """A bare reference as a completion that boxes it, each blank of a several-blank one (`$5$;$10$`) boxed."""
    return "; ".join(f"\\boxed{{{blank.strip().strip('$')}}}" for blank in reference.split(";"))


def trl_way(completion: str, reference: str) -> float:
    """math-verify as TRL's accuracy_reward calls it; an unparsable reference counts as 0 here (TRL skips it)."""
    gold = parse(reference, extraction_mode="first_match")
    if not gold:
        return 0.0
    return float(verify(gold, parse(completion, extraction_config=[_BOXED_ONLY], extraction_mode="first_match")))


def timed(score, completions: list[str], references: list[str], rounds: int) -> tuple[float, float]:
    """(share scored 1.0, seconds per completion), the best of `rounds`."""
    best, scores = float("inf"), []
    for _ in range(rounds):
        started = time.perf_counter()
        scores = score(completions, references)
        best = min(best, time.perf_counter() - started)
    return sum(scores) / len(scores), best / len(completions)


def main(rounds: int) -> None:
    print(f"{'set':18} {'records':>7}  {'tinylm full marks':>17} {'TRL way':>8}  {'tinylm ms':>9} {'TRL ms':>7}  ratio")
    for name, path, answer_field, solution_field in SETS:
        records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        references = [str(record[answer_field]) for record in records]
        completions = [
            str(record[solution_field]) if solution_field else reference if "####" in reference else boxed(reference)
            for record, reference in zip(records, references)
        ]
        ours, our_time = timed(lambda c, r: accuracy([""] * len(c), c, r), completions, references, rounds)
        theirs, their_time = timed(lambda c, r: [trl_way(*pair) for pair in zip(c, r)], completions, references, rounds)
        print(
            f"{name:18} {len(records):7d}  {ours:17.0%} {theirs:8.0%}  {our_time * 1e3:9.2f} {their_time * 1e3:7.2f}"
            f"  {their_time / our_time:5.2f}x"
        )


if __name__ == "__main__":
    main(rounds=1 if bench_parser(__doc__).parse_args().quick else 3)
