"""What every route of the server shares: the model's generator, the generation slots and the settings, kept on the
app's state, and the one way a sampling request becomes a response (whole or streamed, inside a slot, within its
deadline)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tinylm.inference.admission import ARRIVED, ApiError, Deadline, GenerationSlots
from tinylm.inference.generate import Finish
from tinylm.inference.server import (
    Generator,
    Reply,
    ReplyParts,
    SamplingRequest,
    SlottedResponse,
    event_line,
    usage_of,
)
from tinylm.inference.settings import ServerSettings


@dataclass(frozen=True)
class Served:
    """One loaded model as the routes see it."""

    generator: Generator
    slots: GenerationSlots
    settings: ServerSettings

    def check_model(self, request: SamplingRequest) -> None:
        """A request naming another model is a 404, as OpenAI answers it."""
        if request.model is not None and request.model != self.settings.model_name:
            message = f"the model {request.model!r} does not exist: this server serves {self.settings.model_name!r}"
            raise ApiError(404, message, "invalid_request_error", "model_not_found")

    def respond(
        self,
        request: Request,
        body: SamplingRequest,
        prompt: list[int],
        max_tokens: int,
        head: dict,
        kind: Reply,
        scored: Callable[[Finish, str], dict] | None = None,
    ) -> Response:
        """The reply to a sampling request, generated once a slot is free: one JSON body, or server-sent events
        when the request streams; `scored` adds a completion's echo and log-probabilities."""
        deadline = Deadline(request.scope[ARRIVED], self.settings.request_timeout_s)
        finish = Finish()
        pieces = self.generator.pieces(prompt, body, max_tokens, finish, deadline)

        async def whole() -> Response:
            parts = await run_in_threadpool(ReplyParts.of, pieces)
            choice = kind.choice(parts, parts.finish_reason(finish))
            if scored is not None:
                choice |= await run_in_threadpool(scored, finish, parts.content)
            reply = {"object": kind.object, "choices": [choice], "usage": usage_of(prompt, finish)}
            return JSONResponse(head | reply)

        async def streamed() -> Response:
            def events() -> Iterator[str]:
                chunk = head | {"object": kind.chunk_object}
                yield from (event_line(chunk | {"choices": [choice]}) for choice in kind.opening())
                parts = ReplyParts()
                for channel, text in pieces:
                    yield event_line(chunk | {"choices": [kind.delta(parts.add(channel, text))]})
                yield event_line(chunk | {"choices": [kind.delta(None, parts.finish_reason(finish))]})
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return SlottedResponse(self.slots, deadline, streamed if body.stream else whole)


def served(request: Request) -> Served:
    """The route dependency: the model the app was built for."""
    return request.app.state.served
