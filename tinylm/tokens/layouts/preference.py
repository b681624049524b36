"""Preference pairs, from each layout people download them in: two conversations, chosen and rejected.

| layout | a record | source of the layout |
|---|---|---|
| minimind | `{"chosen": [messages], "rejected": [messages]}`, the prompt inside both | MiniMind's dpo.jsonl |
| trl | `{"prompt", "chosen", "rejected"}`: text, or messages (conversational) | TRL |
| ultrafeedback_binarized | `{"prompt": text, "chosen": [messages], "rejected": [messages]}` | H4, Firefly |
| sharegpt | `{"conversations": [prompt turns], "chosen": {one turn}, "rejected": {one turn}}` | LLaMA-Factory |
| ultrafeedback | `{"instruction", "completions": [{"response", "overall_score"}, ...]}` | openbmb/UltraFeedback |
| ranked | `{"instruction", "input"?, "output": [best, ..., worst], "history"?}` | LLaMA-Factory's oaast_rm |
| hh_rlhf | `{"chosen", "rejected"}`: transcripts of `\n\nHuman:` / `\n\nAssistant:` turns | Anthropic HH-RLHF |
| medicalgpt | `{"system"?, "history"?, "question", "response_chosen", "response_rejected"}` | MedicalGPT |
| llamafactory_v1 | `{"chosen_messages", "rejected_messages"}`: typed parts, `loss_weight` | LLaMA-Factory v1 |

A layout that ranks several answers (ranked, ultrafeedback) gives the best against each worse one, or against the
worst alone (`ranked_pairs`); every other layout gives one pair per record.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from tinylm.tokens.layouts.messages import Skipped, message, tools
from tinylm.tokens.layouts.sft import Conversation, Tools, alpaca, role_content, sharegpt, turns_of

Pair = tuple[Conversation, Conversation]
RankedPairs = Literal["best_vs_each", "best_vs_worst"]
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
# UltraFeedback's completions carry several scores; the overall one ranks them, a fine-grained one if it is missing.
SCORE_FIELDS = ("overall_score", "score", "rating")


def minimind(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    return [(role_content(record["chosen"]), role_content(record["rejected"]))], []


def trl(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """An explicit prompt (text: one user turn) and two replies (text: one assistant turn each)."""
    prompt = turns_of(record["prompt"], "user")
    return [(prompt + turns_of(record["chosen"], "assistant"), prompt + turns_of(record["rejected"], "assistant"))], []


def ultrafeedback_binarized(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """Whole conversations whose first turn is the prompt again; a conversation without it gets it in front."""
    prompt = turns_of(record["prompt"], "user")
    sides = []
    for side in (record["chosen"], record["rejected"]):
        conversation = role_content(side)
        sides.append(conversation if conversation[: len(prompt)] == prompt else prompt + conversation)
    return [(sides[0], sides[1])], []


def sharegpt_pairs(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """The prompt turns (ShareGPT's from/value, or role/content) and a chosen and a rejected reply turn."""
    turns = record["conversations"]
    first = turns[0] if isinstance(turns, list) and turns else None
    prompt, offered = sharegpt(record) if isinstance(first, dict) and "from" in first else (role_content(turns), [])
    replies = [_reply(record[side]) for side in ("chosen", "rejected")]
    return [(prompt + replies[0], prompt + replies[1])], offered


def ultrafeedback(record: dict[str, Any], pairs: RankedPairs = "best_vs_worst") -> tuple[list[Pair], Tools]:
    """The best-scored completion of the prompt against the worse ones (`pairs`); a record whose scores all tie
    has no preference."""
    prompt = turns_of(record.get("instruction", record.get("prompt")), "user")
    completions = record["completions"]
    if not isinstance(completions, list) or len(completions) < 2:
        raise Skipped("fewer_than_two_completions")
    scored = sorted(((_score(item), index) for index, item in enumerate(completions)), key=lambda pair: -pair[0])
    best = scored[0][0]
    worse = [index for score, index in scored if score < best]
    if not worse:
        raise Skipped("completions_tie")
    replies = [message("assistant", _response(completion)) for completion in completions]
    chosen = prompt + [replies[scored[0][1]]]
    return [(chosen, prompt + [replies[index]]) for index in _ranked(worse, pairs)], []


def ranked(record: dict[str, Any], pairs: RankedPairs = "best_vs_worst") -> tuple[list[Pair], Tools]:
    """Alpaca's fields with `output` a list of answers ranked best first (LLaMA-Factory's oaast_rm files, from
    OpenAssistant's ranked replies): the first against each later one, or against the last (`pairs`)."""
    answers = record["output"]
    if not isinstance(answers, list) or len(answers) < 2:
        raise Skipped("fewer_than_two_answers")
    conversation, _ = alpaca({**record, "output": answers[0]})
    prompt = conversation[:-1]
    worse = [prompt + [message("assistant", answer)] for answer in answers[1:]]
    return [(conversation, rejected) for rejected in _ranked(worse, pairs)], []


def hh_rlhf(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """Two whole transcripts in Anthropic's `\\n\\nHuman: ... \\n\\nAssistant: ...` form; the turns they share are the
    prompt (as TRL's extract_prompt takes the common prefix), what follows is each side's reply."""
    chosen, rejected = (_transcript(record[side]) for side in ("chosen", "rejected"))
    return [(chosen, rejected)], []


def medicalgpt(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """MedicalGPT's reward-model layout: an optional system and history of exchanges, the question, and a chosen
    and a rejected response to it."""
    conversation, _ = alpaca(
        {
            "system": record.get("system"),
            "history": record.get("history"),
            "instruction": record["question"],
            "output": record["response_chosen"],
        }
    )
    return [(conversation, [*conversation[:-1], message("assistant", record["response_rejected"])])], []


def llamafactory_v1(record: dict[str, Any]) -> tuple[list[Pair], Tools]:
    """LLaMA-Factory's v1 pairs: two whole conversations of typed-part messages, turns with `loss_weight` 0 kept out
    of the loss."""
    return [(role_content(record["chosen_messages"]), role_content(record["rejected_messages"]))], tools(
        record.get("tools")
    )


def _ranked(worse: list[Any], pairs: RankedPairs) -> list[Any]:
    return worse if pairs == "best_vs_each" else worse[-1:]


def _transcript(text: Any) -> Conversation:
    """An HH-RLHF transcript as messages: split at its `Human:` and `Assistant:` markers."""
    if not isinstance(text, str):
        raise Skipped("transcript_not_text")
    pieces = _HH_TURN.split(text)
    if pieces[0].strip() or len(pieces) < 3:
        raise Skipped("no_human_assistant_turns")
    return [message("user" if role == "Human" else "assistant", body) for role, body in zip(pieces[1::2], pieces[2::2])]


def _reply(side: Any) -> Conversation:
    if isinstance(side, dict) and "from" in side:
        return [message(side["from"], side.get("value"))]
    return turns_of(side, "assistant")


def _score(completion: Any) -> float:
    if isinstance(completion, dict):
        for field in SCORE_FIELDS:
            if isinstance(completion.get(field), int | float):
                return float(completion[field])
    raise Skipped("completion_without_score")


def _response(completion: dict[str, Any]) -> Any:
    return completion.get("response", completion.get("text"))
