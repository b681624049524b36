"""The server's settings, apart from the server: pydantic only, so `tinylm serve --help` and the config reference
build them without importing torch or FastAPI."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ServerSettings(BaseModel, frozen=True):
    """`tinylm serve`'s limits, bounded so that a typo cannot make a server that turns everyone away."""

    model_name: str = Field("tinylm", min_length=1, description="the model's id in /v1/models and in replies (--name)")
    max_tokens: int = Field(512, ge=1, description="most tokens one reply may have")
    max_body_bytes: int = Field(1 << 20, ge=1, description="largest request body read")
    api_key: str | None = Field(
        None, min_length=1, description="required as a bearer token when set (TINYLM_API_KEY, not a flag)"
    )
    max_running: int = Field(4, ge=1, description="generations at once, each holding a KV cache for its context")
    max_waiting: int = Field(
        32, ge=0, description="requests queued for a generation slot; more are turned away with a 429"
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="from arrival: the wait for a slot and the generation together"
    )
