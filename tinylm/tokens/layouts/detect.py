"""Which layout a file's records are in, told from a record's fields, and the reader for each layout.

A file is read in one layout: the first record whose fields name one decides it (or the file's `layout`
setting does), and a record of that file that does not fit it is skipped and counted. KTO files (one
completion with a yes/no label) and pairs whose prompt cannot be told from their replies are refused whole,
since no record of theirs is a preference pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from tinylm.tokens.layouts import preference, sft

Kind = Literal["sft", "dpo"]
Reader = Callable[[dict[str, Any]], tuple[Any, sft.Tools]]

READERS: dict[Kind, dict[str, Reader]] = {
    "sft": {
        "minimind": sft.minimind,
        "sharegpt": sft.sharegpt,
        "openai": sft.openai,
        "alpaca": sft.alpaca,
        "firefly": sft.firefly,
        "prompt_completion": sft.prompt_completion,
        "moss": sft.moss,
    },
    "dpo": {
        "minimind": preference.minimind,
        "trl": preference.trl,
        "ultrafeedback_binarized": preference.ultrafeedback_binarized,
        "sharegpt": preference.sharegpt_pairs,
        "ultrafeedback": preference.ultrafeedback,
        "ranked": preference.ranked,
        "hh_rlhf": preference.hh_rlhf,
        "medicalgpt": preference.medicalgpt,
        "llamafactory_v1": preference.llamafactory_v1,
    },
}


class NotChatData(ValueError):
    """A file whose records no layout of this kind reads: refused whole, with what it holds instead."""


def detect(record: Any) -> tuple[Kind, str] | None:
    """The kind and layout a record's fields say, or None when they name none (the next record may)."""
    if not isinstance(record, dict):
        return None
    keys = set(record)
    if "label" in keys or "kto_tag" in keys:
        raise NotChatData(
            "holds KTO data (one completion with a yes/no label), not preference pairs: DPO needs a chosen and a "
            "rejected reply to one prompt"
        )
    if "labels" in keys:
        raise NotChatData(
            "holds stepwise supervision (a label per reasoning step, for a process reward model), not chat data"
        )
    if {"chosen", "rejected"} <= keys:
        return "dpo", _pair_layout(record)
    if {"chosen_messages", "rejected_messages"} <= keys:
        return "dpo", "llamafactory_v1"
    if {"question", "response_chosen", "response_rejected"} <= keys:
        return "dpo", "medicalgpt"
    if {"instruction", "output"} <= keys and isinstance(record["output"], list):
        return "dpo", "ranked"
    if "completions" in keys:
        return "dpo", "ultrafeedback"
    if "messages" in keys:
        return "sft", "openai"
    if "conversations" in keys:
        turns = record["conversations"]
        first = turns[0] if isinstance(turns, list) and turns else None
        return "sft", "sharegpt" if isinstance(first, dict) and "from" in first else "minimind"
    if "conversation" in keys:
        return "sft", "firefly"
    if "chat" in keys and isinstance(record["chat"], dict):
        return "sft", "moss"
    if {"instruction", "output"} <= keys:
        return "sft", "alpaca"
    if {"prompt", "completion"} <= keys:
        return "sft", "prompt_completion"
    return None


def _pair_layout(record: dict[str, Any]) -> str:
    if "conversations" in record:
        return "sharegpt"
    if "prompt" in record:
        return (
            "ultrafeedback_binarized"
            if isinstance(record["prompt"], str) and isinstance(record["chosen"], list)
            else "trl"
        )
    if isinstance(record["chosen"], str) and record["chosen"].lstrip(" ").startswith("\n\nHuman:"):
        return "hh_rlhf"
    if isinstance(record["chosen"], str):
        raise NotChatData(
            "holds pairs of whole texts with the prompt inside them (TRL's implicit-prompt standard layout): "
            "the prompt cannot be told from the reply; give a `prompt` field, or the pairs as messages"
        )
    return "minimind"
