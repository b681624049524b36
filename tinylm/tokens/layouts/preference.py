"""Preference pairs, from each layout people download them in: two conversations, chosen and rejected.

| layout | a record | source of the layout |
|---|---|---|
| minimind | `{"chosen": [messages], "rejected": [messages]}`, the prompt inside both | MiniMind's dpo.jsonl |
| trl | `{"prompt", "chosen", "rejected"}`: text, or messages (conversational) | TRL |
| ultrafeedback_binarized | `{"prompt": text, "chosen": [messages], "rejected": [messages]}` | H4, Firefly |
| sharegpt | `{"conversations": [prompt turns], "chosen": {one turn}, "rejected": {one turn}}` | LLaMA-Factory |
| ultrafeedback | `{"instruction", "completions": [{"response", "overall_score"}, ...]}` | openbmb/UltraFeedback |
"""

from __future__ import annotations

from typing import Any

from tinylm.tokens.layouts.messages import Skipped, message
from tinylm.tokens.layouts.sft import Conversation, Tools, role_content, sharegpt, turns_of

Pair = tuple[Conversation, Conversation]
# UltraFeedback's completions carry several scores; the overall one ranks them, a fine-grained one if it is missing.
SCORE_FIELDS = ("overall_score", "score", "rating")


def minimind(record: dict[str, Any]) -> tuple[Pair, Tools]:
    return (role_content(record["chosen"]), role_content(record["rejected"])), []


def trl(record: dict[str, Any]) -> tuple[Pair, Tools]:
    """An explicit prompt (text: one user turn) and two replies (text: one assistant turn each)."""
    prompt = turns_of(record["prompt"], "user")
    return (prompt + turns_of(record["chosen"], "assistant"), prompt + turns_of(record["rejected"], "assistant")), []


def ultrafeedback_binarized(record: dict[str, Any]) -> tuple[Pair, Tools]:
    """Whole conversations whose first turn is the prompt again; a conversation without it gets it in front."""
    prompt = turns_of(record["prompt"], "user")
    sides = []
    for side in (record["chosen"], record["rejected"]):
        conversation = role_content(side)
        sides.append(conversation if conversation[: len(prompt)] == prompt else prompt + conversation)
    return (sides[0], sides[1]), []


def sharegpt_pairs(record: dict[str, Any]) -> tuple[Pair, Tools]:
    """The prompt turns (ShareGPT's from/value, or role/content) and a chosen and a rejected reply turn."""
    turns = record["conversations"]
    first = turns[0] if isinstance(turns, list) and turns else None
    prompt, offered = sharegpt(record) if isinstance(first, dict) and "from" in first else (role_content(turns), [])
    replies = [_reply(record[side]) for side in ("chosen", "rejected")]
    return (prompt + replies[0], prompt + replies[1]), offered


def ultrafeedback(record: dict[str, Any]) -> tuple[Pair, Tools]:
    """The best- and the worst-scored completion of the prompt; a record whose scores tie has no preference."""
    prompt = turns_of(record.get("instruction", record.get("prompt")), "user")
    completions = record["completions"]
    if not isinstance(completions, list) or len(completions) < 2:
        raise Skipped("fewer_than_two_completions")
    scored = sorted(((_score(item), index) for index, item in enumerate(completions)), reverse=True)
    (best, chosen), (worst, rejected) = scored[0], scored[-1]
    if best == worst:
        raise Skipped("completions_tie")
    reply = [message("assistant", _response(completions[index])) for index in (chosen, rejected)]
    return (prompt + reply[:1], prompt + reply[1:]), []


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
