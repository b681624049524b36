"""One message of any layout to tinylm's form, or the reason it cannot be (a skip reason a user can act on).

Roles are named differently by every layout (ShareGPT's human/gpt/function_call/observation, OpenAI's
user/assistant/tool, BELLE's Human/Assistant); content may be a string or, as the OpenAI API and LLaMA-Factory's
v1 files give it, a list of typed parts: text, reasoning and tool calls are read, and anything else (an image, an
audio clip) is a reason to skip the record (`non_text_content`) rather than to train on a conversation with a hole
in it.
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]

ROLE_NAMES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
    "ipython": "tool",
}
TOOL_CALL_ROLES = {"function_call"}  # ShareGPT: an assistant turn that is a call, its value the call as JSON


class Skipped(Exception):
    """A record that cannot be trained on; its message is the counted skip reason."""


def message(role: Any, content: Any, extra: dict[str, Any] | None = None) -> Message:
    """A message in tinylm's form from a role name and content of any layout; `extra` holds the fields OpenAI's
    layout gives beside them (`reasoning_content`, `tool_calls`)."""
    if not isinstance(role, str):
        raise Skipped("missing_role")
    name = role.strip().lower()
    if name in TOOL_CALL_ROLES:
        return {"role": "assistant", "content": "", "tool_calls": [tool_call(content)]}
    if name not in ROLE_NAMES:
        raise Skipped("unknown_role")
    body, thought, calls = typed_parts(content)
    found: Message = {"role": ROLE_NAMES[name], "content": body}
    if calls:
        found["tool_calls"] = calls
    extra = extra or {}
    reasoning = extra.get("reasoning_content") or thought
    if reasoning:
        if not isinstance(reasoning, str):
            raise Skipped("bad_reasoning_content")
        found["reasoning_content"] = reasoning
    if "loss_weight" in extra:  # LLaMA-Factory's v1 layout: 0 keeps an assistant turn out of the loss
        if extra["loss_weight"] not in (0, 1):
            raise Skipped("loss_weight_not_0_or_1")
        if found["role"] == "assistant" and extra["loss_weight"] == 0:
            found["trained"] = False
    if extra.get("tool_calls"):
        if not isinstance(extra["tool_calls"], list):
            raise Skipped("tool_calls_not_a_list")
        found["tool_calls"] = found.get("tool_calls", []) + [tool_call(call) for call in extra["tool_calls"]]
    return found


def text(content: Any) -> str:
    """A message's text: a string as it is; typed parts joined (text parts only)."""
    if content is None:
        raise Skipped("null_content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Skipped("content_not_text")
    pieces = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise Skipped("content_not_text" if kind is None else "non_text_content")
        value = part.get("text", part.get("value"))
        if not isinstance(value, str):
            raise Skipped("content_not_text")
        pieces.append(value)
    return "".join(pieces)


def typed_parts(content: Any) -> tuple[str, str | None, list[dict[str, Any]]]:
    """Text, reasoning and tool calls of content given as typed parts (`reasoning` and `tool_call` parts, as
    LLaMA-Factory's v1 layout has them); content given as text is all text."""
    if not isinstance(content, list):
        return text(content), None, []
    kinds = [part.get("type") if isinstance(part, dict) else None for part in content]
    reasoning = [part for part, kind in zip(content, kinds) if kind == "reasoning"]
    calls = [
        tool_call(part.get("value", part.get("text"))) for part, kind in zip(content, kinds) if kind == "tool_call"
    ]
    rest = [part for part, kind in zip(content, kinds) if kind not in ("reasoning", "tool_call")]
    thought = "".join(str(part.get("value", part.get("text", ""))) for part in reasoning)
    return text(rest), thought or None, calls


def tool_call(call: Any) -> dict[str, Any]:
    """`{"name", "arguments"}` from a call given as JSON text, as OpenAI's `{"function": {...}}`, or as itself."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError:
            raise Skipped("tool_call_not_json") from None
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        call = call["function"]
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise Skipped("tool_call_without_name")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise Skipped("tool_arguments_not_json") from None
    return {"name": call["name"], "arguments": arguments}


def tools(value: Any) -> list[dict[str, Any]]:
    """The tools a record offers: a list of function schemas, given as a list or as JSON text (ShareGPT)."""
    if value in (None, "", "[]"):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise Skipped("tools_not_json") from None
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise Skipped("tools_not_a_list")
    return [tool.get("function", tool) if tool.get("type") == "function" else tool for tool in value]
