"""Conversations to token ids with the ChatML template, and which of them a model learns from.

The ids equal what `transformers`' `apply_chat_template` gives for the template in
`tokenizer_config.json`, built piece by piece so that the loss mask is exact: 1 on the
assistant's content and its closing `<|im_end|>` (so the model learns to stop), 0 on
everything it is given. Message text is encoded with special-token matching off, so a
literal "<|im_end|>" inside a message stays text and cannot forge a turn.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinylm.tokens.tokenizer_files import (
    IM_END,
    IM_START,
    THINK_END,
    THINK_START,
    THINK_TOKENS,
    TOOL_CALL_END,
    TOOL_CALL_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
    TOOL_TOKENS,
    TOOLS_INSTRUCTION,
    TOOLS_PREAMBLE,
    load_tokenizer,
)

ROLES = ("system", "user", "assistant", "tool")
TRAINED_ROLE = "assistant"
Message = dict[str, str]
# A piece of a conversation as planned for encoding: text to tokenize, or a special token's id; and its mask bit.
Segment = tuple[str | int, int]


@dataclass(frozen=True)
class ChatTokens:
    ids: list[int]
    mask: list[int]

    @property
    def trained(self) -> int:
        return sum(self.mask)

    def truncated(self, max_len: int) -> ChatTokens:
        return ChatTokens(self.ids[:max_len], self.mask[:max_len])


class ChatEncoder:
    """Encodes batches of conversations; one `encode_batch_fast` call per batch for all their text."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.text_tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.text_tokenizer.encode_special_tokens = True
        self.im_start = tokenizer.token_to_id(IM_START)
        self.im_end = tokenizer.token_to_id(IM_END)
        self.markers = {
            token: tokenizer.token_to_id(token) for token in THINK_TOKENS if tokenizer.token_to_id(token) is not None
        }
        # The template's own tool tags; a tokenizer made before one existed has it as text, as `transformers` would.
        self.tags = {token: tokenizer.token_to_id(token) or token for token in TOOL_TOKENS}

    @classmethod
    @functools.lru_cache(maxsize=2)
    def load(cls, tokenizer_dir: Path, tokenizer_sha256: str) -> ChatEncoder:
        return cls(load_tokenizer(tokenizer_dir))

    def encode(
        self,
        conversations: Sequence[Sequence[Message]],
        generation_prompt: bool = False,
        last_reply_only: bool = False,
        tools: Sequence[Sequence[dict[str, Any]]] | None = None,
    ) -> list[ChatTokens]:
        """Each conversation's ids and mask; `tools` are the functions each conversation offers (in its system
        turn), `generation_prompt` appends the opening of an assistant turn, and `last_reply_only` trains only the
        final message (a DPO side's reply: the turns before it are the prompt)."""
        offered = tools if tools is not None else [()] * len(conversations)
        plans = [
            self._plan(messages, offers, generation_prompt, last_reply_only)
            for messages, offers in zip(conversations, offered)
        ]
        texts = [piece for plan in plans for piece, _ in plan if isinstance(piece, str)]
        encoded = iter(self.text_tokenizer.encode_batch_fast(texts, add_special_tokens=False))
        results = []
        for plan in plans:
            ids: list[int] = []
            mask: list[int] = []
            for piece, trained in plan:
                piece_ids = next(encoded).ids if isinstance(piece, str) else [piece]
                ids += piece_ids
                mask += [trained] * len(piece_ids)
            results.append(ChatTokens(ids, mask))
        return results

    def _plan(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], generation_prompt: bool, last_only: bool
    ) -> list[Segment]:
        """The conversation as the chat template renders it, in pieces: text, or a special token's id."""
        plan: list[Segment] = []
        first = 0
        if tools:
            first = int(bool(messages) and messages[0]["role"] == "system")
            system = f"{messages[0]['content']}\n\n" if first else ""
            schemas = "".join(f"\n{json.dumps(tool, ensure_ascii=False)}" for tool in tools)
            plan += [(self.im_start, 0), ("system\n" + system + TOOLS_PREAMBLE + schemas, 0)]
            plan += [(piece, 0) for piece in self._tagged(TOOLS_INSTRUCTION)] + [(self.im_end, 0), ("\n", 0)]
        for index in range(first, len(messages)):
            message, before, after = messages[index], messages[index - 1 : index], messages[index + 1 : index + 2]
            if message["role"] == "tool":
                opening = [(self.im_start, 0), ("user", 0)] if index == 0 or before[0]["role"] != "tool" else []
                response = [("\n", 0), (self.tags[TOOL_RESPONSE_START], 0), (f"\n{message['content']}\n", 0)]
                closing = [(self.im_end, 0), ("\n", 0)] if not after or after[0]["role"] != "tool" else []
                plan += opening + response + [(self.tags[TOOL_RESPONSE_END], 0)] + closing
                continue
            trained = int(
                message["role"] == TRAINED_ROLE
                and message.get("trained", True)
                and (not last_only or index == len(messages) - 1)
            )
            plan += [(self.im_start, 0), (f"{message['role']}\n", 0)]
            plan += [(piece, trained) for piece in self._body(message) + self._calls(message)]
            plan += [(self.im_end, trained), ("\n", 0)]
        if generation_prompt:
            plan += [(self.im_start, 0), (f"{TRAINED_ROLE}\n", 0)]
        return _joined(plan)

    def _calls(self, message: Message) -> list[str | int]:
        """An assistant's tool calls, each `<tool_call>` and a JSON object of its name and arguments, a new line
        before each but a first with no content before it."""
        pieces: list[str | int] = []
        for number, call in enumerate(message.get("tool_calls") or []):
            arguments = call["arguments"]
            arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            body = f'\n{{"name": {json.dumps(call["name"], ensure_ascii=False)}, "arguments": {arguments}}}\n'
            separator = ["\n"] if message["content"] or number else []
            pieces += [*separator, self.tags[TOOL_CALL_START], body, self.tags[TOOL_CALL_END]]
        return pieces

    def _tagged(self, text: str) -> list[str | int]:
        """Template text with the tool tags in it as their tokens (the template's words, not a message's)."""
        pieces = re.split(f"({'|'.join(map(re.escape, self.tags))})", text)
        return [self.tags.get(piece, piece) for piece in pieces if piece]

    def _body(self, message: Message) -> list[str | int]:
        """A message's content as text pieces; in an assistant's, `<think>` and `</think>` are their own tokens
        (its `reasoning_content`, when given, goes between them, as Qwen3's template puts it). Anywhere
        else they stay text, like every other special token inside a message."""
        if message["role"] != TRAINED_ROLE or not self.markers:
            return [message["content"]]
        reasoning = message.get("reasoning_content")
        text = f"{THINK_START}\n{reasoning}\n{THINK_END}\n\n{message['content']}" if reasoning else message["content"]
        pieces = re.split(f"({'|'.join(map(re.escape, self.markers))})", text)
        return [self.markers.get(piece, piece) for piece in pieces if piece]


def _joined(plan: list[Segment]) -> list[Segment]:
    """Adjacent text pieces of one mask bit as one piece: `transformers` tokenizes the rendered text between two
    special tokens at once, so a whitespace run across two pieces must be tokenized as one too."""
    joined: list[Segment] = []
    for piece, trained in plan:
        if joined and isinstance(piece, str) and isinstance(joined[-1][0], str) and joined[-1][1] == trained:
            joined[-1] = (joined[-1][0] + piece, trained)
        else:
            joined.append((piece, trained))
    return joined


def pair_problem(chosen: list[Message], rejected: list[Message], turns: str = "last") -> str | None:
    """Why two conversations are not a preference pair (a skip reason), or None: each must end in an assistant
    reply, the one preferred or rejected, and where only that reply is scored (`turns` last) they must share
    every turn before it."""
    if chosen[-1]["role"] != TRAINED_ROLE or rejected[-1]["role"] != TRAINED_ROLE:
        return "last_turn_not_assistant"
    if turns == "last" and chosen[:-1] != rejected[:-1]:
        return "prompts_differ"
    if chosen == rejected:
        return "chosen_equals_rejected"
    return None


def conversation_problem(messages: Any) -> str | None:
    """Why a record is not a usable conversation (a skip reason), or None when it is."""
    if not isinstance(messages, list) or not messages:
        return "not_a_conversation"
    for message in messages:
        if (problem := message_problem(message)) is not None:
            return problem
    if not any(message["role"] == TRAINED_ROLE for message in messages):
        return "no_assistant_turn"
    if any(_empty_reply(message) for message in messages):
        return "empty_reply"
    return None


def _empty_reply(message: Message) -> bool:
    """A trained assistant turn that says nothing and calls nothing: training on it teaches the model to answer
    with a bare end of turn."""
    return (
        message["role"] == TRAINED_ROLE
        and message.get("trained", True)
        and not message["content"].strip()
        and not message.get("tool_calls")
    )


def message_problem(message: Any) -> str | None:
    """Why one message cannot be encoded, named for what a user fixes in the file."""
    if not isinstance(message, dict):
        return "message_not_an_object"
    if "role" not in message:
        return "missing_role"
    if message["role"] not in ROLES:
        return "unknown_role"
    if "content" not in message:
        return "missing_content"
    if message["content"] is None:
        return "null_content"
    if not isinstance(message["content"], str):
        return "content_not_text"
    if not isinstance(message.get("reasoning_content", ""), str | None):
        return "bad_reasoning_content"
    return None
