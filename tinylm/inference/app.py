"""An OpenAI-compatible HTTP API for a tinylm model: chat and text completions, whole or streamed, on FastAPI.

Any OpenAI client (the `openai` package, LangChain, a chat UI) talks to it by base URL, and
`/` serves a web chat page that streams from the same API (plain HTML and JavaScript).
Every request generates with its own KV cache and its own random generator (seeded by
its `seed`), so concurrent requests share nothing but the read-only weights. What a
request may ask for is bounded: `max_tokens` by the server's limit and the model's
context, the prompt by the context, the body by `max_body_bytes`; anything outside is a
4xx with an OpenAI-style error message, never a 500 or an out-of-memory. How much it
takes on is bounded too (admission.py): `max_running` generations at once, `max_waiting`
queued behind them, each request within `request_timeout_s`; beyond that, a 429.

The routes live in routers by concern (the page and health, OpenAI's routes, the tokenizer's); the limits, the
key and the error form are applied here, once, for all of them.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tinylm.inference import routes_openai, routes_page, routes_tokenize
from tinylm.inference.admission import ApiError, GenerationSlots, RequestGuard
from tinylm.inference.generate import LoadedModel
from tinylm.inference.server import Generator
from tinylm.inference.serving import Served
from tinylm.inference.settings import ServerSettings


def build_app(loaded: LoadedModel, settings: ServerSettings) -> FastAPI:
    """The API for one loaded model; `settings.api_key`, when set, is required on every route but the chat page
    and `/health`."""
    # With a key, the API's own description (/docs, /redoc, /openapi.json) is not served: a browser cannot send
    # the key to open it, and it would tell anyone what the server offers.
    documented = {} if settings.api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="tinylm", description=f"OpenAI-compatible API for {settings.model_name}", **documented)
    app.state.served = Served(
        Generator(loaded, settings), GenerationSlots(settings.max_running, settings.max_waiting), settings
    )
    app.add_middleware(
        RequestGuard,
        api_key=settings.api_key,
        max_body_bytes=settings.max_body_bytes,
        public=routes_page.PUBLIC_PATHS,
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    for router in (routes_page.router, routes_openai.router, routes_tokenize.router):
        app.include_router(router)
    return app


async def _api_error(_: Request, error: ApiError) -> JSONResponse:
    return error.response()


async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
    """A request that does not fit its model, as OpenAI says it: a 400 naming the field, not FastAPI's 422."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:])
    return ApiError(400, f"{where}: {first['msg']}" if where else first["msg"]).response()
