"""What a public endpoint checks before it does any work, and how much work it takes on at once.

`RequestGuard` is plain ASGI rather than a FastAPI dependency or an `@app.middleware`,
because both of those run after the server has started reading the body: the key is
checked on the headers alone, and the body is counted as its chunks arrive (with or
without `Content-Length`), so neither a client without a key nor one sending an endless
chunked body makes the server hold more than `max_body_bytes`.

`GenerationSlots` bounds the generations running at once and the requests queued for
one; a request that finds the queue full, or waits out its time, is turned away with a
429 that says so, which OpenAI clients retry after `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ARRIVED = "tinylm.arrived"  # the scope key holding when a request arrived, for its time limit
LOG = logging.getLogger("tinylm.serve")
T = TypeVar("T")


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the words the client sees, as OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.retry_after_s = status, message, kind, code, retry_after_s

    def body(self) -> dict[str, Any]:
        """OpenAI's error object."""
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code or self.status}}

    def response(self) -> JSONResponse:
        """The answer the client gets, wherever the refusal happens (the guard, a route, a slot)."""
        headers = {} if self.retry_after_s is None else {"retry-after": str(self.retry_after_s)}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def authorised(headers: dict[str, str], api_key: str) -> bool:
    """`Authorization: Bearer <key>`, the scheme in any case (RFC 7235), the key compared in constant time."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), api_key.encode())


class RequestGuard:
    """Refuses a request without the key (on every path but `public`) before reading its body, and any body over
    `max_body_bytes`, counted as it arrives; passes the rest to `app` with the body already read."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, public: frozenset[str]) -> None:
        self.app, self.api_key, self.max_body_bytes, self.public = app, api_key, max_body_bytes, public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[ARRIVED] = time.monotonic()
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            if self.api_key is not None and scope["path"] not in self.public and not authorised(headers, self.api_key):
                raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>", "authentication_error")
            body = await self._body(headers, receive)
        except ApiError as refused:
            await refused.response()(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes:
        too_large = ApiError(413, f"the request body is over {self.max_body_bytes} bytes", "invalid_request_error")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read by the guard, then whatever the client sends next (a disconnect, for a streamed reply)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class GenerationSlots:
    """At most `running` generations at once and `waiting` requests queued for a slot, first come first served.

    A bound on both is what bounds memory: each generation holds a KV cache and activations
    for its context, a queued request only its parsed body. Created inside the server's
    event loop (on first use), as asyncio's primitives must be.
    """

    def __init__(self, running: int, waiting: int) -> None:
        self.running, self.waiting = running, waiting
        self._free: asyncio.Semaphore | None = None
        self.busy = self.queued = 0

    @asynccontextmanager
    async def slot(self, deadline: Deadline) -> Any:
        """Hold a slot for the block, waiting in line until the request's deadline at most."""
        if self._free is None:
            self._free = asyncio.Semaphore(self.running)
        if self._free.locked():
            if self.queued >= self.waiting:
                LOG.warning(
                    "turned a request away with a 429: %d generations running and %d waiting", self.busy, self.queued
                )
                raise ApiError(
                    429,
                    f"the server is busy ({self.busy}/{self.running} generating, {self.queued}/{self.waiting} "
                    "waiting): retry later",
                    "rate_limit_error",
                    "server_busy",
                    retry_after_s=1,
                )
            self.queued += 1
            try:
                await asyncio.wait_for(self._free.acquire(), max(deadline.at - time.monotonic(), 0))
            except TimeoutError:
                LOG.warning(
                    "turned a request away with a 429: it waited out its time limit of %g s for a slot",
                    deadline.limit_s,
                )
                message = (
                    "the server is busy (no generation slot came free within the time limit of "
                    f"{deadline.limit_s:g} s): retry later"
                )
                raise ApiError(429, message, "rate_limit_error", "server_busy", retry_after_s=1) from None
            finally:
                self.queued -= 1
        else:
            await self._free.acquire()
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._free.release()


class Deadline:
    """A request's time limit, counted from its arrival: it bounds the wait for a slot, and cuts the reply's text
    when it is reached (the reply then ends as one cut by `max_tokens` does, with finish reason `length`)."""

    def __init__(self, arrived: float, limit_s: float) -> None:
        self.at, self.limit_s = arrived + limit_s, limit_s

    def cut(self, pieces: Iterator[T]) -> Iterator[T]:
        for piece in pieces:
            yield piece
            if time.monotonic() >= self.at:
                LOG.warning(
                    "a reply was cut at this server's time limit of %g s per request (--request-timeout)", self.limit_s
                )
                return
