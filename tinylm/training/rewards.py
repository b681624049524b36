"""GRPO's rewards: verifiable checks built in, and a user's own function named `module:function`.

A reward function has TRL's signature, so one written for TRL's GRPOTrainer works here unchanged:

    def reward(prompts: list[str], completions: list[str], completion_ids: list[list[int]],
               **fields: list) -> list[float | None]

one score per completion; `fields` are the prompt records' other fields (`answer`, say), one value per
completion. None means the reward does not apply to that completion and counts as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tinylm.registry import load
from tinylm.tokens.tokenizer_files import THINK_END, THINK_START
from tinylm.training.answers import is_correct, parse_reference
from tinylm.training.grpo_config import BUILT_IN_REWARDS

RewardFunction = Callable[..., list[float | None]]


def accuracy(prompts: list[str], completions: list[str], answer: Sequence[Any], **_: Any) -> list[float | None]:
    """1 where the completion's final answer is the record's `answer` (a value, or a worked solution read where it
    states its answer), compared by math-verify with Chinese answer phrases and choice letters read too (see
    `answers`); else 0."""
    return [
        float(is_correct(completion, parse_reference(str(reference))))
        for completion, reference in zip(completions, answer)
    ]


@dataclass(frozen=True)
class ReferenceCheck:
    """The accuracy reward run on each prompt record's own reference solution: a reward that cannot give full
    marks to the references would train the model away from right answers."""

    records: int
    full_marks: int
    failed_lines: tuple[int, ...]

    @property
    def share(self) -> float:
        return self.full_marks / self.records if self.records else 1.0


def check_references(records: Sequence[dict[str, Any]]) -> ReferenceCheck:
    """Score each record's worked solution (its `solution` field when the answer came from another field, else the
    answer itself) against its answer: what share of the file's references the accuracy reward calls right."""
    failed = []
    for record in records:
        solution = record.get("solution")
        completion = solution if isinstance(solution, str) and solution.strip() else record["answer"]
        if not is_correct(str(completion), parse_reference(str(record["answer"]))):
            failed.append(int(record.get("line", 0)))
    return ReferenceCheck(len(records), len(records) - len(failed), tuple(failed))


_THOUGHT = re.compile(
    rf"^(?:{re.escape(THINK_START)})?\n?(?P<thought>.+?)\n?{re.escape(THINK_END)}\s*(?P<answer>\S.*)$", re.S
)


def think_format(prompts: list[str], completions: list[str], **_: Any) -> list[float | None]:
    """1 where the completion reasons and then answers: thinking closed by one `</think>` (opened by the
    completion or by the prompt, as `think: true` does), followed by a non-empty answer; else 0."""
    return [
        float(bool(_THOUGHT.match(text)) and text.count(THINK_END) == 1 and text.count(THINK_START) <= 1)
        for text in completions
    ]


def overlong_penalty(max_tokens: int) -> RewardFunction:
    """DAPO's soft overlong punishment: 0 up to the last quarter of `max_tokens`, then falling linearly to -1 at
    `max_tokens` (a completion cut there never finished its answer)."""
    buffer = max(max_tokens // 4, 1)

    def length(prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [-min(max(len(ids) - (max_tokens - buffer), 0) / buffer, 1.0) for ids in completion_ids]

    return length


@dataclass(frozen=True)
class Reward:
    name: str  # as the config gives it
    label: str  # in metric names and table columns: the function's name, without the module or file it lives in
    function: RewardFunction
    weight: float
    # Fields every prompt record must have for this reward: a record without one is skipped when prompts are read.
    needs: tuple[str, ...] = ()


BUILT_IN = BUILT_IN_REWARDS


def load_rewards(names: Sequence[str], weights: Sequence[float] | None, max_completion_tokens: int) -> list[Reward]:
    """The rewards a config names: built-in names, or `module:function` / `path/to/file.py:function`."""
    if weights is not None and len(weights) != len(names):
        raise ValueError(f"reward_weights has {len(weights)} values for {len(names)} rewards: give one per reward")
    rewards = []
    for index, name in enumerate(names):
        weight = 1.0 if weights is None else weights[index]
        label = name.rpartition(":")[2]
        label = label if label not in {reward.label for reward in rewards} else f"{label}_{index}"
        if name == "accuracy":
            rewards.append(Reward(name, label, accuracy, weight, ("answer",)))
        elif name == "think_format":
            rewards.append(Reward(name, label, think_format, weight))
        elif name == "length":
            rewards.append(Reward(name, label, overlong_penalty(max_completion_tokens), weight))
        else:
            rewards.append(Reward(name, label, _imported(name), weight))
    return rewards


def _imported(name: str) -> RewardFunction:
    """A user's reward function: `package.module:function`, or `file.py:function` for a file beside the config."""
    where, _, attribute = name.rpartition(":")
    if not where or not attribute:
        raise ValueError(f"reward {name!r} is neither built in ({', '.join(BUILT_IN)}) nor module:function")
    try:
        function = load(name)
    except (ImportError, FileNotFoundError, AttributeError, ValueError) as error:
        raise ValueError(f"reward {name}: cannot load it ({error}); check the module path and function name") from error
    if not callable(function):
        raise ValueError(f"reward {name} is not a function")
    return function


def score(
    rewards: Sequence[Reward],
    prompts: list[str],
    completions: list[str],
    completion_ids: list[list[int]],
    fields: dict[str, list[Any]],
) -> torch.Tensor:
    """Each reward's score of each completion, (completions, rewards), NaN where a reward said None. A reward that
    raises or answers the wrong number of scores fails the step with its name."""
    columns = []
    for reward in rewards:
        try:
            values = reward.function(prompts=prompts, completions=completions, completion_ids=completion_ids, **fields)
        except Exception as error:
            raise RuntimeError(f"reward {reward.name} failed: {type(error).__name__}: {error}") from error
        if len(values) != len(completions):
            raise RuntimeError(f"reward {reward.name} gave {len(values)} scores for {len(completions)} completions")
        columns.append([math.nan if value is None else float(value) for value in values])
    return torch.tensor(columns, dtype=torch.float32).T
