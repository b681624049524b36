"""Conversations to token ids with the ChatML template, and which of them a model learns from.

The ids equal what `transformers`' `apply_chat_template` gives for the template in
`tokenizer_config.json`, built piece by piece so that the loss mask is exact: 1 on the
assistant's content and its closing `<|im_end|>` (so the model learns to stop), 0 on
everything it is given. Message text is encoded with special-token matching off, so a
literal "<|im_end|>" inside a message stays text and cannot forge a turn.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinylm.tokens.tokenizer_files import IM_END, IM_START, load_tokenizer

ROLES = ("system", "user", "assistant")
TRAINED_ROLE = "assistant"
Message = dict[str, str]


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

    @classmethod
    @functools.lru_cache(maxsize=2)
    def load(cls, tokenizer_dir: Path, tokenizer_sha256: str) -> ChatEncoder:
        return cls(load_tokenizer(tokenizer_dir))

    def encode(
        self, conversations: Sequence[Sequence[Message]], generation_prompt: bool = False, last_reply_only: bool = False
    ) -> list[ChatTokens]:
        """Each conversation's ids and mask; `generation_prompt` appends the opening of an assistant turn, and
        `last_reply_only` trains only the final message (a DPO side's reply: the turns before it are the prompt)."""
        texts = [piece for messages in conversations for message in messages for piece in _pieces(message)]
        if generation_prompt:
            texts += [f"{TRAINED_ROLE}\n"] * len(conversations)
        encoded = iter(self.text_tokenizer.encode_batch_fast(texts, add_special_tokens=False))
        results = []
        for messages in conversations:
            ids: list[int] = []
            mask: list[int] = []
            for index, message in enumerate(messages):
                header, content, newline = (next(encoded).ids for _ in range(3))
                trained = int(message["role"] == TRAINED_ROLE and (not last_reply_only or index == len(messages) - 1))
                ids += [self.im_start, *header, *content, self.im_end, *newline]
                mask += [0] * (1 + len(header)) + [trained] * (len(content) + 1) + [0] * len(newline)
            results.append(ChatTokens(ids, mask))
        if generation_prompt:
            for result in results:
                opening = next(encoded).ids
                result.ids.extend([self.im_start, *opening])
                result.mask.extend([0] * (1 + len(opening)))
        return results


def _pieces(message: Message) -> tuple[str, str, str]:
    return f"{message['role']}\n", message["content"], "\n"


def pair_problem(chosen: list[Message], rejected: list[Message]) -> str | None:
    """Why two conversations are not a preference pair (a skip reason), or None: they must share every
    turn but the last, and each must end in an assistant reply, the one preferred or rejected."""
    if chosen[-1]["role"] != TRAINED_ROLE or rejected[-1]["role"] != TRAINED_ROLE:
        return "last_turn_not_assistant"
    if chosen[:-1] != rejected[:-1]:
        return "prompts_differ"
    return None


def conversation_problem(messages: Any) -> str | None:
    """Why a record is not a usable conversation (a skip reason), or None when it is."""
    if not isinstance(messages, list) or not messages:
        return "not_a_conversation"
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            return "bad_message"
    if not any(message["role"] == TRAINED_ROLE for message in messages):
        return "no_assistant_turn"
    return None
