"""Conversations for supervised fine-tuning, from each layout people download them in.

| layout | a record | source of the layout |
|---|---|---|
| minimind | `{"conversations": [{"role", "content"}, ...]}` | MiniMind's sft_*.jsonl |
| sharegpt | `{"conversations": [{"from", "value"}, ...], "system"?, "tools"?}` | ShareGPT, LLaMA-Factory, glaive |
| openai | `{"messages": [{"role", "content", "tool_calls"?}, ...], "tools"?}`; content text or typed parts | OpenAI |
| alpaca | `{"instruction", "input"?, "output", "system"?, "history"?: [[query, reply], ...]}` | Alpaca, BELLE |
| firefly | `{"conversation": [{"human", "assistant"}, ...], "system"?}` | Firefly, MOSS |
| prompt_completion | `{"prompt", "completion"}`, each a string or messages | TRL |
"""

from __future__ import annotations

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
