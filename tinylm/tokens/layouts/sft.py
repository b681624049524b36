"""Conversations for supervised fine-tuning, from each layout people download them in.

| layout | a record | source of the layout |
|---|---|---|
| minimind | `{"conversations": [{"role", "content"}, ...]}` | MiniMind's sft_*.jsonl |
| sharegpt | `{"conversations": [{"from", "value"}, ...], "system"?, "tools"?}` | ShareGPT, LLaMA-Factory, glaive |
| openai | `{"messages": [{"role", "content", "tool_calls"?}, ...], "tools"?}`; content text or typed parts | OpenAI |
| alpaca | `{"instruction", "input"?, "output", "system"?, "history"?: [[query, reply], ...]}` | Alpaca, BELLE |
| firefly | `{"conversation": [{"human", "assistant"}, ...], "system"?}` | Firefly, MOSS |
| prompt_completion | `{"prompt", "completion"}`, each a string or messages | TRL |
| moss | `{"meta_instruction", "chat": {"turn_1": {"Human", "Inner Thoughts", "Commands", "MOSS"}, ...}}` | MOSS-003 |
"""

from __future__ import annotations

import re
from typing import Any

from tinylm.tokens.layouts.messages import Message, Skipped, message, tools

Conversation = list[Message]
Tools = list[dict[str, Any]]


def minimind(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    return role_content(record["conversations"]), tools(record.get("tools"))


def openai(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    return role_content(record["messages"]), tools(record.get("tools"))


def sharegpt(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise Skipped("not_a_conversation")
    system = [message("system", record["system"])] if record.get("system") else []
    return system + [_from_value(turn) for turn in turns], tools(record.get("tools"))


def alpaca(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    """The history's exchanges, then the instruction (and its input, on the next line) and the output."""
    history = record.get("history") or []
    if not isinstance(history, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in history):
        raise Skipped("history_not_pairs")
    query = record["instruction"]
    if record.get("input"):
        query = f"{query}\n{record['input']}"
    system = [message("system", record["system"])] if record.get("system") else []
    turns = [message(role, content) for pair in history for role, content in zip(("user", "assistant"), pair)]
    return system + turns + [message("user", query), message("assistant", record["output"])], []


def firefly(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    exchanges = record["conversation"]
    if not isinstance(exchanges, list) or not exchanges or not all(isinstance(turn, dict) for turn in exchanges):
        raise Skipped("not_a_conversation")
    system = [message("system", record["system"])] if record.get("system") else []
    turns = [message(role, turn.get(field)) for turn in exchanges for role, field in _FIREFLY_FIELDS]
    return system + turns, []


def prompt_completion(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    """A prompt (text: one user turn) and its completion (text: one assistant reply)."""
    return turns_of(record["prompt"], "user") + turns_of(record["completion"], "assistant"), tools(record.get("tools"))


def moss(record: dict[str, Any]) -> tuple[Conversation, Tools]:
    """MOSS-003's turns, each field wrapped in its markers (`<|Human|>: ... <eoh>`): the meta instruction is the
    system turn, inner thoughts the reasoning. A turn that runs plugins (search, calculator) is skipped: its
    commands and results are MOSS's own syntax, not tool calls a chat template can render."""
    turns = record["chat"]
    if not isinstance(turns, dict) or not turns:
        raise Skipped("not_a_conversation")
    system = [message("system", record["meta_instruction"])] if record.get("meta_instruction") else []
    conversation = []
    for name in sorted(turns, key=lambda key: int(re.sub(r"\D", "", key) or 0)):
        turn = turns[name]
        if not isinstance(turn, dict):
            raise Skipped("message_not_an_object")
        if _moss_field(turn.get("Commands")) is not None:
            raise Skipped("moss_plugin_commands")
        reply = message("assistant", _moss_field(turn.get("MOSS")) or "")
        if (thought := _moss_field(turn.get("Inner Thoughts"))) is not None:
            reply["reasoning_content"] = thought
        conversation += [message("user", _moss_field(turn.get("Human"))), reply]
    return system + conversation, []


_MOSS_MARKERS = re.compile(r"^\s*<\|[^|>]+\|>:\s?|\s*<eo[hmtcr]>\s*$")


def _moss_field(value: Any) -> str | None:
    """A MOSS turn's field without its markers; None for an absent one or MOSS's `None`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Skipped("content_not_text")
    text = _MOSS_MARKERS.sub("", value)
    return None if text.strip() == "None" else text


def role_content(turns: Any) -> Conversation:
    """Messages given as `{"role", "content"}` objects (with OpenAI's extra fields)."""
    if not isinstance(turns, list) or not turns:
        raise Skipped("not_a_conversation")
    if not all(isinstance(turn, dict) for turn in turns):
        raise Skipped("message_not_an_object")
    return [message(turn.get("role"), _content(turn), turn) for turn in turns]


def turns_of(value: Any, role: str) -> Conversation:
    """Text as one message in `role`, or messages as they are (TRL gives either)."""
    if isinstance(value, str):
        return [message(role, value)]
    if isinstance(value, dict):
        return role_content([value])
    return role_content(value)


_FIREFLY_FIELDS = (("user", "human"), ("assistant", "assistant"))


def _content(turn: dict[str, Any]) -> Any:
    """A turn's content; an assistant turn that only calls tools may have none (OpenAI gives null)."""
    if turn.get("tool_calls") and turn.get("content") is None:
        return ""
    if "content" not in turn:
        raise Skipped("missing_content")
    return turn["content"]


def _from_value(turn: Any) -> Message:
    if not isinstance(turn, dict):
        raise Skipped("message_not_an_object")
    if "value" not in turn:
        raise Skipped("missing_content")
    return message(turn.get("from"), turn["value"])
