"""Load a model (any reference tinylm takes) and generate from it: text or chat."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer

from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.storage.manifest import file_sha256
from tinylm.tokens.chat_template import ChatEncoder, Message
from tinylm.tokens.tokenizer_files import (
    EOS,
    IM_END,
    THINK_END,
    THINK_START,
    TOKENIZER_FILE,
    TOOL_CALL_END,
    TOOL_CALL_START,
    load_tokenizer,
)
from tinylm.weights.reference import LocatedModel, locate_model, model_weights


@dataclass(frozen=True)
class LoadedModel:
    model: Transformer
    tokenizer: Tokenizer
    tokenizer_sha256: str  # of its tokenizer.json, as the data stages' manifests record theirs

    @functools.cached_property
    def chat(self) -> ChatEncoder:
        """Built once per loaded model: it copies the tokenizer to encode message text literally."""
        return ChatEncoder(self.tokenizer)

    @property
    def stop_ids(self) -> set[int]:
        return {self.tokenizer.token_to_id(EOS), self.tokenizer.token_to_id(IM_END)}


def load_model(reference: str, workspace: str | Path | None = None, context: int | None = None) -> LoadedModel:
    """A model ready to generate, from any reference `locate_model` takes (a run id is looked for in `workspace`
    first, then in MLflow); `context` past the trained one stretches its positions with YaRN."""
    with tempfile.TemporaryDirectory() as scratch:
        return load_located(locate_model(reference, _optional_path(workspace), Path(scratch)), workspace, context)


def load_located(located: LocatedModel, workspace: str | Path | None = None, context: int | None = None) -> LoadedModel:
    """The located model's weights (an adapter checkpoint folded into its base) and tokenizer, ready to generate."""
    weights, config = model_weights(located, _optional_path(workspace))
    model = Transformer(config.with_context(context))
    model.load_state_dict(weights)
    return LoadedModel(model.eval(), load_tokenizer(located.directory), file_sha256(located.directory / TOKENIZER_FILE))


def _optional_path(workspace: str | Path | None) -> Path | None:
    return None if workspace is None else Path(workspace)


@dataclass
class Finish:
    """How a generation ended, filled in as it runs: its new token ids, and `stop` (a stop token, kept in
    `stop_id`, or a stop string) or `length`."""

    ids: list[int] = field(default_factory=list)
    reason: str = "length"
    stop_id: int | None = None

    @property
    def tokens(self) -> int:
        return len(self.ids)


def stream_text(
    loaded: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator,
    finish: Finish | None = None,
) -> Iterator[str]:
    """New text as it is generated. Byte-level tokens can end inside a multi-byte character:
    such a tail is held back until a later token completes it, and flushed as it is at the end."""
    finish = finish if finish is not None else Finish()
    new: list[int] = []
    shown = text = ""
    for token in stream_tokens(loaded.model, prompt_ids, max_new_tokens, sampling, loaded.stop_ids, generator):
        if token in loaded.stop_ids:
            finish.reason, finish.stop_id = "stop", token
            break
        new.append(token)
        finish.ids.append(token)
        text = loaded.tokenizer.decode(new)
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    if len(text) > len(shown):
        yield text[len(shown) :]


Channel = Literal["content", "reasoning", "tool_call"]
# The tokens that open and close a reply's channels: its thinking, and each tool call.
_SWITCHES: dict[str, Channel] = {
    THINK_START: "reasoning", THINK_END: "content", TOOL_CALL_START: "tool_call", TOOL_CALL_END: "content"
}  # fmt: skip


def stream_channels(
    loaded: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator,
    finish: Finish,
) -> Iterator[tuple[Channel, str]]:
    """A chat reply as it is generated, by channel: its content and its reasoning (between `<think>` tokens) as
    text pieces, and each tool call (between `<tool_call>` tokens) whole, once it is closed; a call the reply
    leaves open comes out as content, tag and all, so nothing generated is lost. The new lines the chat template
    puts around the reasoning are the template's, not the model's words, and are left out."""
    tokenizer = loaded.tokenizer
    switches = {tokenizer.token_to_id(token): channel for token, channel in _SWITCHES.items()}
    switches.pop(None, None)
    channel: Channel = "content"
    segment: list[int] = []
    shown, after_thinking = "", False
    for token in stream_tokens(loaded.model, prompt_ids, max_new_tokens, sampling, loaded.stop_ids, generator):
        if token in loaded.stop_ids:
            finish.reason, finish.stop_id = "stop", token
            break
        finish.ids.append(token)
        if token not in switches:
            segment.append(token)
            text = tokenizer.decode(segment)
            if channel != "tool_call" and not text.endswith("\ufffd"):
                visible = _visible(channel, text, after_thinking)
                if len(visible) > len(shown):
                    yield channel, visible[len(shown) :]
                    shown = visible
            continue
        text = tokenizer.decode(segment)
        if channel == "tool_call":
            yield channel, text
        elif len(visible := _visible(channel, text, after_thinking)) > len(shown):
            yield channel, visible[len(shown) :]
        after_thinking = channel == "reasoning"
        channel, segment, shown = switches[token], [], ""
    text = tokenizer.decode(segment)
    if channel == "tool_call":
        yield "content", TOOL_CALL_START + text
    elif len(visible := _visible(channel, text, after_thinking)) > len(shown):
        yield channel, visible[len(shown) :]


def _visible(channel: Channel, text: str, after_thinking: bool) -> str:
    """A segment's text without the template's new lines: those inside `<think>` and `</think>` (a last one is
    held back while the reasoning goes on, so what is shown only ever grows), and those after `</think>`."""
    if channel == "reasoning":
        return text.removeprefix("\n").removesuffix("\n")
    return text.lstrip("\n") if after_thinking else text


def generate_text(
    loaded: LoadedModel, prompt: str, max_new_tokens: int = 64, sampling: Sampling = Sampling(), seed: int = 0
) -> str:
    """The prompt and its continuation."""
    prompt_ids = loaded.tokenizer.encode(prompt, add_special_tokens=False).ids or [loaded.tokenizer.token_to_id(EOS)]
    return prompt + "".join(
        stream_text(loaded, prompt_ids, max_new_tokens, sampling, torch.Generator().manual_seed(seed))
    )


def chat_reply(
    loaded: LoadedModel, history: list[Message], max_new_tokens: int, sampling: Sampling, generator: torch.Generator
) -> Iterator[str]:
    """The assistant's next turn after `history`, streamed, encoded with the same template as the SFT data."""
    (prompt,) = loaded.chat.encode([history], generation_prompt=True)
    yield from stream_text(loaded, prompt.ids, max_new_tokens, sampling, generator)
