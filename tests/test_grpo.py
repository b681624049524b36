"""GRPO's parts on their own: the loss against its formula, group advantages, the built-in and user rewards, and
how prompt files are read."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from tinylm.config import TokenizerConfig
from tinylm.tokens.prompts import PromptSettings, encoded_prompts, read_prompts
from tinylm.tokens.tokenizer import bpe_trainer, new_tokenizer
from tinylm.tokens.tokenizer_files import THINK_START, load_tokenizer
from tinylm.training.answers import final_answer_span, is_correct, parse_reference
from tinylm.training.methods.grpo import GrpoConfig, group_advantages, grpo_loss, reference_warning
from tinylm.training.rewards import (
    accuracy,
    check_references,
    load_rewards,
    overlong_penalty,
    score,
    think_format,
)

DATA = Path(__file__).parent / "data"
GSM8K = DATA / "gsm8k" / "test-excerpt.jsonl"
# Real math sets in the layouts people download (tests/data/math/README.md): the field holding each reference
# answer, and the field holding a worked solution when the set has one beside its answer.
MATH_SETS = [
    (GSM8K, "answer", None),
    (DATA / "math" / "math500-excerpt.jsonl", "answer", "solution"),
    (DATA / "math" / "math500-excerpt.jsonl", "solution", None),
    (DATA / "math" / "cmath-excerpt.jsonl", "answer", None),
    (DATA / "math" / "gaokao_math_cloze-excerpt.jsonl", "answer", None),
    (DATA / "math" / "cn_middle_school-excerpt.jsonl", "answer", None),
]

LOGPS = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -3.0, -1.0]])
OLD = torch.tensor([[-1.5, -0.5, -1.0], [-0.2, -1.0, -1.0]])
REFERENCE = torch.tensor([[-1.2, -0.7, -2.5], [-0.3, -2.0, -0.9]])
ADVANTAGES = torch.tensor([1.0, -0.5])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def per_token_by_hand(beta: float, low: float, high: float) -> list[list[float]]:
    """DeepSeekMath's per-token term written out with math.*, token by token."""
    rows = []
    for i in range(2):
        row = []
        for t in range(3):
            ratio = math.exp(LOGPS[i, t].item() - OLD[i, t].item())
            advantage = ADVANTAGES[i].item()
            clipped = min(max(ratio, 1 - low), 1 + high)
            delta = REFERENCE[i, t].item() - LOGPS[i, t].item()
            kl = math.exp(delta) - delta - 1
            row.append(-min(ratio * advantage, clipped * advantage) + beta * kl)
        rows.append(row)
    return rows


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_loss_is_the_clipped_surrogate_with_k3_kl_normalised_as_trl_defines_it(loss_type):
    beta, low, high, max_tokens = 0.04, 0.2, 0.28, 4
    loss, metrics = grpo_loss(LOGPS, OLD, REFERENCE, ADVANTAGES, MASK, beta, low, high, loss_type, max_tokens)
    terms = per_token_by_hand(beta, low, high)
    masked = [[terms[i][t] * MASK[i, t].item() for t in range(3)] for i in range(2)]
    expected = {
        "grpo": sum(sum(row) / sum(MASK[i].tolist()) for i, row in enumerate(masked)) / 2,
        "dapo": sum(map(sum, masked)) / 5,
        "dr_grpo": sum(map(sum, masked)) / (2 * max_tokens),
    }[loss_type]
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    kls = [
        math.exp(d) - d - 1
        for i in range(2)
        for t in range(3)
        if MASK[i, t] and (d := REFERENCE[i, t].item() - LOGPS[i, t].item()) is not None
    ]
    assert metrics["kl"].item() == pytest.approx(sum(kls) / 5, rel=1e-6)
    # Clipped: row 0 token 0 (ratio e^0.5 > 1.28 with A > 0) and row 1 token 1 (ratio e^-2 < 0.8 with A < 0).
    assert metrics["clip_ratio"].item() == pytest.approx(2 / 5)


def test_on_the_rollouts_own_policy_the_gradient_is_the_advantage_weighted_log_likelihoods():
    """With one iteration per rollout the ratio is 1 and the clip never binds: the gradient of the grpo loss is
    -A_i / |o_i| per token's log-probability, the plain policy gradient."""
    logps = LOGPS.clone().requires_grad_()
    loss, metrics = grpo_loss(logps, logps.detach(), None, ADVANTAGES, MASK, 0.0, 0.2, 0.2, "grpo", 4)
    loss.backward()
    expected = -ADVANTAGES[:, None] * MASK / MASK.sum(-1, keepdim=True) / 2
    assert torch.allclose(logps.grad, expected) and "kl" not in metrics and metrics["clip_ratio"] == 0


def test_advantages_are_centred_within_each_group_and_scaled_as_asked():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    centred = group_advantages(rewards, 4, "none")
    assert centred.tolist() == [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]
    scaled = group_advantages(rewards, 4, "group")
    spread = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()
    assert scaled[:4].tolist() == pytest.approx([value / (spread + 1e-4) for value in (0.5, -0.5, -0.5, 0.5)])
    assert scaled[4:].tolist() == [0, 0, 0, 0], "a group whose completions all scored the same teaches nothing"
    assert group_advantages(rewards, 4, "batch")[0].item() == pytest.approx(0.5 / (rewards.std().item() + 1e-4))


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def made_wrong(text: str) -> str:
    """The same solution with its final answer made wrong: the answer's first digit changed, else its first choice
    letter moved on, else its first letter doubled (a word answer such as \\text{Evelyn})."""
    span = final_answer_span(text)
    boxed = text.rfind("\\boxed{")
    start = boxed + 7 if boxed >= 0 else (text.rfind(span) if span != text else 0)
    if digit := re.compile(r"\d").search(text, start):
        wrong = str(int(digit.group()) + 1) if digit.group() != "0" else "7"
        return text[: digit.start()] + wrong + text[digit.end() :]
    if letter := re.compile(r"[A-H]").search(text, start):
        return text[: letter.start()] + "BCDEFGHA"["ABCDEFGH".index(letter.group())] + text[letter.end() :]
    letter = re.compile(r"[a-z\u4e00-\u9fff]").search(text, start)
    return text[: letter.end()] + text[letter.start() : letter.end()] + text[letter.end() :]


@pytest.mark.parametrize(("path", "answer_field", "solution_field"), MATH_SETS)
def test_accuracy_gives_every_real_reference_full_marks_and_no_perturbed_one_any(path, answer_field, solution_field):
    """The reward against each set's own references (the worked solution where the set has one, else the answer
    itself), and against the same references with their final answer made wrong."""
    records = read_records(path)
    references = [str(record[answer_field]) for record in records]
    solutions = [str(record[solution_field or answer_field]) for record in records]
    right = accuracy([""] * len(records), solutions, references)
    assert [line for line, score in enumerate(right, 1) if score != 1.0] == [], "references the reward calls wrong"
    wrong = accuracy([""] * len(records), [made_wrong(solution) for solution in solutions], references)
    assert [line for line, score in enumerate(wrong, 1) if score != 0.0] == [], "wrong answers the reward calls right"


@pytest.mark.parametrize(
    ("completion", "reference", "right"),
    [
        ("", "\\boxed{\\frac{14}{3}}", False),
        ("so $f = \\boxed{\\frac{14}{3}}$", "\\frac{14}{3}", True),  # nested braces
        ("The answer is 6", "so the sum is $\\boxed{\\frac{13}{6}}$", False),  # no last-number fallback
        ("答案是 9 页。", "9", True),
        ("答案：72元", "72", True),
        ("1/3", "2/6", True),
        ("0.12", "12%", True),
        ("所以 $x \\in [1,3)$，答案为 $[1,3)$", "$[1,3)$", True),
        ("故选：D。", "D", True),
        ("答案是 AC", "AC", True),
        ("答案是 A", "AC", False),
        ("$5$;$10$", "$5$;$10$", True),
        ("答案: 5; 11", "$5$;$10$", False),
        ("<think>\n也许是 8\n</think>\n\n#### 7", "7", True),
        ("<think>\n答案是 7\n</think>\n\n答案是 8", "7", False),  # only what follows the reasoning counts
        ("anything", "", False),  # an empty reference is never matched
    ],
)
def test_accuracy_reads_answers_as_math_sets_and_chinese_exams_state_them(completion, reference, right):
    assert is_correct(completion, parse_reference(reference)) is right


def test_the_reference_check_reports_the_share_of_solutions_the_reward_calls_right():
    records = [{**record, "line": line} for line, record in enumerate(read_records(MATH_SETS[1][0]), 1)][:10]
    assert check_references(records).share == 1.0, "MATH-500's solutions against its answers"
    broken = [{**record, "answer": "42"} if record["line"] <= 2 else record for record in records]
    check = check_references(broken)
    assert (check.full_marks, check.failed_lines) == (8, (1, 2))
    assert "scores only 8 of 10 reference solutions right (80%; first at lines 1, 2)" in reference_warning(check, "f")
    assert reference_warning(check_references(records), "f") is None


def test_think_format_wants_reasoning_closed_once_then_an_answer():
    completions = ["<think>\n7\n</think>\n\n7", "7\n</think>\n\n7", "<think>\n7\n</think>", "7", "a</think>b</think>c"]
    assert think_format([""] * 5, completions) == [1, 1, 0, 0, 0]


def test_the_length_penalty_starts_in_the_last_quarter_and_reaches_minus_one_at_the_limit():
    penalty = overlong_penalty(8)
    ids = [[0] * n for n in (4, 6, 7, 8)]
    assert penalty([""] * 4, [""] * 4, ids) == [0.0, 0.0, -0.5, -1.0]


def test_a_user_reward_loads_from_a_file_and_a_failing_one_is_named(tmp_path):
    source = tmp_path / "my_rewards.py"
    source.write_text(
        "def short(prompts, completions, **fields):\n    return [1.0 if len(c) < 3 else None for c in completions]\n"
        "def broken(prompts, completions, **fields):\n    raise KeyError('level')\n"
        "def counted_wrong(prompts, completions, **fields):\n    return [1.0]\n",
        "utf-8",
    )
    rewards = load_rewards([f"{source}:short", "accuracy"], [0.5, 2.0], 16)
    assert [(reward.label, reward.weight, reward.needs) for reward in rewards] == [
        ("short", 0.5, ()),
        ("accuracy", 2.0, ("answer",)),
    ]
    scores = score(rewards, ["a", "b"], ["7", "long"], [[1], [1, 2]], {"answer": ["7", "8"]})
    assert scores[0].tolist() == [1.0, 1.0] and math.isnan(scores[1, 0]) and scores[1, 1] == 0
    assert [r.label for r in load_rewards([f"{source}:short", "tinylm.training.rewards:accuracy"] * 2, None, 16)] == [
        "short",
        "accuracy",
        "short_2",
        "accuracy_3",
    ], "metric names: the function's name, told apart when two share one"
    with pytest.raises(RuntimeError, match="reward .*broken failed: KeyError"):
        score(load_rewards([f"{source}:broken"], None, 16), ["a"], ["b"], [[1]], {})
    with pytest.raises(RuntimeError, match="gave 1 scores for 2 completions"):
        score(load_rewards([f"{source}:counted_wrong"], None, 16), ["a", "b"], ["c", "d"], [[1], [2]], {})
    with pytest.raises(ValueError, match="neither built in"):
        load_rewards(["acuracy"], None, 16)
    with pytest.raises(ValueError, match="cannot load it"):
        load_rewards(["tinylm.nowhere:reward"], None, 16)


def test_grpo_settings_that_cannot_go_together_are_refused_by_name():
    assert GrpoConfig(max_prompt_tokens=100, max_completion_tokens=28).seq_len == 128
    with pytest.raises(ValueError, match="GRPO sets seq_len itself"):
        GrpoConfig(seq_len=64)
    with pytest.raises(ValueError, match="multiple of iterations"):
        GrpoConfig(iterations=2, checkpoint_every=3)
    with pytest.raises(ValueError, match="reward_weights has 1 values for 2 rewards"):
        GrpoConfig(rewards=["accuracy", "length"], reward_weights=[1.0])


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    """A byte-level tokenizer with tinylm's special tokens, trained on GSM8K's questions."""

    tokenizer = new_tokenizer()
    questions = [json.loads(line)["question"] for line in GSM8K.read_text("utf-8").splitlines()]
    tokenizer.train_from_iterator(questions, bpe_trainer(TokenizerConfig(vocab_size=400, min_frequency=1)))
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    return tmp_path


def test_prompts_are_encoded_with_the_generation_prompt_and_bad_records_counted_by_line(tmp_path, tokenizer_dir):
    lines = GSM8K.read_text("utf-8").splitlines()[:6]
    lines.insert(2, '{"question": "no answer here"}')
    lines.insert(4, "[1, 2]")
    source = tmp_path / "gsm8k.jsonl"
    source.write_text("\n".join(lines) + "\n", "utf-8")
    settings = PromptSettings("question", None, think=True, max_prompt_tokens=400, required_fields=("answer",),
                              max_skipped_share=0.5)  # fmt: skip
    output = encoded_prompts(source, tokenizer_dir, tmp_path / "workspace", settings)
    manifest = json.loads((output / "manifest.json").read_text("utf-8"))
    assert manifest["stats"]["prompts"] == 6
    assert manifest["stats"]["skipped"] == {"missing_answer": 1, "not_an_object": 1}
    assert manifest["stats"]["first_skipped"] == {"missing_answer": [3], "not_an_object": [5]}
    records = read_prompts(output)
    assert records[0]["prompt"].startswith("Janet") and records[0]["answer"].endswith("#### 18")
    assert "question" not in records[0] and records[0]["line"] == 1
    tokenizer = load_tokenizer(tokenizer_dir)
    text = tokenizer.decode(records[0]["ids"], skip_special_tokens=False)
    assert text.startswith("<|im_start|>user\nJanet") and text.endswith(f"<|im_start|>assistant\n{THINK_START}")
    assert encoded_prompts(source, tokenizer_dir, tmp_path / "workspace", settings) == output, "reused"


def test_a_prompt_file_most_of_whose_records_cannot_be_read_fails_naming_the_remedy(tmp_path, tokenizer_dir):
    settings = PromptSettings(None, None, think=False, max_prompt_tokens=400, required_fields=(), max_skipped_share=0.5)
    with pytest.raises(ValueError, match=r"20 of 20 records skipped, 20 as no_prompt_or_messages .*prompt_field"):
        encoded_prompts(GSM8K, tokenizer_dir, tmp_path / "workspace", settings)
    tight = PromptSettings(
        "question", None, think=False, max_prompt_tokens=20, required_fields=(), max_skipped_share=0.5
    )
    with pytest.raises(ValueError, match="prompt_too_long .*raise max_prompt_tokens"):
        encoded_prompts(GSM8K, tokenizer_dir, tmp_path / "workspace", tight)


def test_the_reference_is_read_from_answer_then_solution_or_the_field_named(tmp_path, tokenizer_dir):
    """MATH-500 has both a final `answer` and a worked `solution`; TRL's math sets have only `solution`; CMATH's
    field is `golden`. The reference the reward reads is kept as `answer` either way."""
    math500 = read_records(MATH_SETS[1][0])[:3]
    solution_only = tmp_path / "solution-only.jsonl"
    solution_only.write_text("".join(json.dumps({"problem": r["problem"], "solution": r["solution"]}) + "\n"
                                     for r in math500), "utf-8")  # fmt: skip
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps({"problem": r["problem"], "golden": r["answer"]}) + "\n" for r in math500))

    def encoded(path: Path, answer_field: str | None) -> list[dict]:
        settings = PromptSettings("problem", answer_field, False, 400, ("answer",), max_skipped_share=0.5)
        return read_prompts(encoded_prompts(path, tokenizer_dir, tmp_path / "workspace", settings))

    assert [r["answer"] for r in encoded(MATH_SETS[1][0], None)][:3] == [r["answer"] for r in math500]
    assert [r["answer"] for r in encoded(solution_only, None)] == [r["solution"] for r in math500]
    assert [r["answer"] for r in encoded(golden, "golden")] == [r["answer"] for r in math500]
    with pytest.raises(ValueError, match="3 of 3 records skipped, 3 as missing_answer .*answer_field"):
        encoded(golden, None)
