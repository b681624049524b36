"""The OpenAI-compatible API's parts: its request models, the generator that turns a request into bounded pieces of
text (its prompt within the context, its reply within `max_tokens`), stops and tool calls cut out of the stream, and
replies and chunks in OpenAI's form. `app.py` builds the server from them, its routes in routers by concern."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from tinylm.inference.admission import ApiError, Deadline, GenerationSlots
from tinylm.inference.generate import Channel, Finish, LoadedModel, stream_channels, stream_text
from tinylm.inference.logprobs import legacy_logprobs
from tinylm.inference.settings import ServerSettings
from tinylm.model.generation import Sampling
from tinylm.tokens.layouts.messages import Skipped
from tinylm.tokens.layouts.messages import message as chat_message
from tinylm.tokens.layouts.messages import tools as offered_tools
from tinylm.tokens.tokenizer_files import EOS, TOOL_CALL_END, TOOL_CALL_START


class Message(BaseModel):
    """A chat message as OpenAI's API gives it: text or typed parts, an assistant's tool calls, a tool's result."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None


class SamplingRequest(BaseModel):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: Literal[1] = 1


class ChatRequest(SamplingRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict] | None = None
    # "none" offers no tools, "auto" lets the model choose; forcing a call is not supported, and is refused.
    tool_choice: Literal["auto", "none"] | None = None


class CompletionRequest(SamplingRequest):
    """OpenAI's legacy completion: a prompt as text or token ids (one prompt per request), and, as evaluation tools
    ask for it, `echo` (the prompt's tokens returned before the completion's) and `logprobs` (each returned token's
    log-probability and the `logprobs` most likely at its position). `max_tokens` 0 with `echo` scores the prompt."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a prompt, or messages rendered with the chat template, as the model would see them."""

    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = Field(None, min_length=1)


def _stops(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else [text for text in (stop or []) if text]


class StopCutter:
    """Text up to the first stop string (which is not sent), fed piece by piece: a tail that may begin a stop
    string is held back until the next piece settles it."""

    def __init__(self, stops: list[str], finish: Finish) -> None:
        self.stops, self.finish, self.pending = stops, finish, ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """What may be sent now, and whether a stop string was met (then nothing more is)."""
        if not self.stops:
            return piece, False
        self.pending += piece
        found = [self.pending.index(stop) for stop in self.stops if stop in self.pending]
        if found:
            self.finish.reason = "stop"
            return self.pending[: min(found)], True
        ends = (size for stop in self.stops for size in range(1, len(stop)) if self.pending.endswith(stop[:size]))
        keep = max(ends, default=0)
        ready, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return ready, False

    def rest(self) -> str:
        return self.pending


def cut_at_stops(pieces: Iterator[str], stops: list[str], finish: Finish) -> Iterator[str]:
    """The text up to the first stop string."""
    cutter = StopCutter(stops, finish)
    for piece in pieces:
        ready, stopped = cutter.feed(piece)
        if ready:
            yield ready
        if stopped:
            return
    if rest := cutter.rest():
        yield rest


def cut_content_at_stops(
    channels: Iterator[tuple[Channel, str]], stops: list[str], finish: Finish
) -> Iterator[tuple[Channel, str]]:
    """A chat reply's channels, its content up to the first stop string (its reasoning and calls as they are)."""
    cutter = StopCutter(stops, finish)
    for channel, text in channels:
        if channel != "content":
            yield channel, text
            continue
        ready, stopped = cutter.feed(text)
        if ready:
            yield channel, ready
        if stopped:
            return
    if rest := cutter.rest():
        yield "content", rest


class Generator:
    """Turns a request into prompt ids, bounds, and text, for one loaded model."""

    def __init__(self, loaded: LoadedModel, settings: ServerSettings) -> None:
        self.loaded, self.settings = loaded, settings
        self.context = loaded.model.config.max_seq_len

    def budget(self, prompt_ids: list[int], asked: int | None) -> int:
        """How many tokens this request may generate, or an error that says what to change."""
        if len(prompt_ids) >= self.context:
            raise ApiError(
                400, f"the prompt is {len(prompt_ids)} tokens; this model's context is {self.context}: shorten it"
            )
        if asked == 0:
            return 0
        if asked is not None and asked > self.settings.max_tokens:
            raise ApiError(400, f"max_tokens {asked} exceeds this server's limit of {self.settings.max_tokens}")
        room = self.context - len(prompt_ids)
        if asked is not None and asked > room:
            raise ApiError(
                400,
                f"the prompt ({len(prompt_ids)} tokens) and max_tokens {asked} exceed the context of {self.context}",
            )
        return min(asked or self.settings.max_tokens, room)

    def pieces(
        self, prompt_ids: list[int], request: SamplingRequest, max_tokens: int, finish: Finish, deadline: Deadline
    ) -> Iterator[tuple[Channel, str]]:
        """The reply as (channel, text) pieces: a chat reply's content, reasoning and tool calls; a completion's
        text, all content."""
        sampling = Sampling(temperature=request.temperature, top_k=0, top_p=request.top_p, repetition_penalty=1.0)
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        generator, stops = torch.Generator().manual_seed(seed), _stops(request.stop)
        if isinstance(request, ChatRequest):
            channels = stream_channels(self.loaded, prompt_ids, max_tokens, sampling, generator, finish)
            return cut_content_at_stops(deadline.cut(channels), stops, finish)
        pieces = stream_text(self.loaded, prompt_ids, max_tokens, sampling, generator, finish)
        return (("content", piece) for piece in cut_at_stops(deadline.cut(pieces), stops, finish))

    def chat_prompt(self, request: ChatRequest) -> list[int]:
        """The conversation and the tools it offers, rendered with the chat template the model was trained with."""
        try:
            messages = [_canonical(item) for item in request.messages]
            offered = offered_tools(request.tools) if request.tool_choice != "none" else []
        except Skipped as problem:
            raise ApiError(400, f"messages: {problem}: each message needs text content (or tool calls)") from None
        (prompt,) = self.loaded.chat.encode([messages], generation_prompt=True, tools=[offered])
        return prompt.ids

    def completion_prompt(self, request: CompletionRequest) -> list[int]:
        prompt = request.prompt
        if prompt and isinstance(prompt, list) and all(isinstance(token, int) for token in prompt):
            prompt = [prompt]  # one prompt of token ids
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ApiError(400, "this server completes one prompt per request")
        prompt = prompt if isinstance(prompt, str) else prompt[0]
        if isinstance(prompt, list):
            vocabulary = self.loaded.tokenizer.get_vocab_size()
            if not prompt or not all(0 <= token < vocabulary for token in prompt):
                raise ApiError(400, f"prompt: token ids must be 0 to {vocabulary - 1}, at least one")
            return prompt
        return self.loaded.tokenizer.encode(prompt, add_special_tokens=False).ids or [
            self.loaded.tokenizer.token_to_id(EOS)
        ]

    def scored_choice(self, request: CompletionRequest, prompt: list[int], finish: Finish, text: str) -> dict:
        """A completion's `text` and `logprobs` with the prompt echoed, as OpenAI's legacy API gives them. A stop
        token that ended the reply is among the scored tokens (not the text), as OpenAI and vLLM give it: the
        harness drops the last scored token as the generated one. Tokens past a stop string are not part of the
        answer and are left out."""
        echoed = self.loaded.tokenizer.decode(prompt) if request.echo else ""
        generated = finish.ids + ([] if finish.stop_id is None else [finish.stop_id])
        found = legacy_logprobs(self.loaded, prompt + generated, 0 if request.echo else len(prompt), request.logprobs)
        if len(echoed + text) < len(echoed + self.loaded.tokenizer.decode(finish.ids)):
            kept = sum(offset < len(echoed + text) for offset in found["text_offset"])
            found = {key: values[:kept] for key, values in found.items()}
        return {"text": echoed + text, "logprobs": found if request.logprobs is not None else None}


def _canonical(item: Message) -> dict:
    """A request's message in tinylm's form (an assistant turn that only calls tools has no content)."""
    content = "" if item.content is None and item.tool_calls else item.content
    return chat_message(item.role, content, item.model_dump(exclude_none=True))


def event_line(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class SlottedResponse(Response):
    """A reply made only once a generation slot is free, and sent while the slot is held. The slot is released
    however the response ends, a client's disconnect included; a request that gets none is answered with a 429."""

    def __init__(self, slots: GenerationSlots, deadline: Deadline, reply: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self.slots, self.deadline, self.reply = slots, deadline, reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with self.slots.slot(self.deadline):
                await (await self.reply())(scope, receive, send)
        except ApiError as refused:
            await refused.response()(scope, receive, send)


@dataclass
class ReplyParts:
    """A reply's content, reasoning and tool calls (in OpenAI's shape) as they come; a call that is not a JSON object
    with a name goes back into the content, tags and all, so nothing the model wrote is lost."""

    content: str = ""
    reasoning: str = ""
    calls: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, pieces: Iterator[tuple[Channel, str]]) -> ReplyParts:
        parts = cls()
        for channel, text in pieces:
            parts.add(channel, text)
        return parts

    def add(self, channel: Channel, text: str) -> dict:
        """Take a piece; returns it as a chat stream's delta."""
        if channel == "reasoning":
            self.reasoning += text
            return {"reasoning_content": text}
        call = _tool_call(text) if channel == "tool_call" else None
        if call is None:
            text = f"{TOOL_CALL_START}{text}{TOOL_CALL_END}" if channel == "tool_call" else text
            self.content += text
            return {"content": text}
        self.calls.append(call)
        return {"tool_calls": [{"index": len(self.calls) - 1} | call]}

    def finish_reason(self, finish: Finish) -> str:
        return "tool_calls" if self.calls and finish.reason == "stop" else finish.reason

    def message(self) -> dict:
        """The assistant's message: `content` (None when it only calls tools), `reasoning_content` (DeepSeek's and
        vLLM's field) and `tool_calls` where there are any."""
        message: dict = {"role": "assistant", "content": None if self.calls and not self.content else self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.calls:
            message["tool_calls"] = self.calls
        return message


def _tool_call(text: str) -> dict | None:
    try:
        call = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = call.get("arguments", {})
    arguments = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call["name"], "arguments": arguments},
    }


@dataclass(frozen=True)
class Reply:
    """How one endpoint shapes its choices, whole and as stream chunks: the only difference between chat and
    text completions once the prompt is built."""

    object: str
    chunk_object: str
    chat: bool

    def choice(self, parts: ReplyParts, finish_reason: str) -> dict:
        if self.chat:
            return {"index": 0, "message": parts.message(), "finish_reason": finish_reason}
        return {"index": 0, "text": parts.content, "logprobs": None, "finish_reason": finish_reason}

    def opening(self) -> list[dict]:
        """The chunks before the text: a chat stream names the speaker first."""
        return [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}] if self.chat else []

    def delta(self, piece: dict | None, finish_reason: str | None = None) -> dict:
        if self.chat:
            return {"index": 0, "delta": piece or {}, "finish_reason": finish_reason}
        return {"index": 0, "text": (piece or {}).get("content", ""), "logprobs": None, "finish_reason": finish_reason}


CHAT = Reply("chat.completion", "chat.completion.chunk", chat=True)
COMPLETION = Reply("text_completion", "text_completion", chat=False)


def usage_of(prompt: list[int], finish: Finish) -> dict:
    return {
        "prompt_tokens": len(prompt),
        "completion_tokens": finish.tokens,
        "total_tokens": len(prompt) + finish.tokens,
    }
