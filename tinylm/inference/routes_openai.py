"""OpenAI's routes: the model list, chat completions and text completions."""

from __future__ import annotations

import functools
import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tinylm.inference.admission import ApiError
from tinylm.inference.server import CHAT, COMPLETION, ChatRequest, CompletionRequest
from tinylm.inference.serving import Served, served

router = APIRouter(prefix="/v1")


@router.get("/models")
def models(model: Served = Depends(served)) -> dict:
    """OpenAI's model list; `max_model_len` (the context, as vLLM names it) and `max_tokens` (this server's limit on
    one reply) let a client fit its requests, as the chat page does."""
    name = model.settings.model_name
    card = {"id": name, "object": "model", "created": 0, "owned_by": "tinylm"}
    limits = {"max_model_len": model.generator.context, "max_tokens": model.settings.max_tokens}
    return {"object": "list", "data": [card | limits]}


@router.post("/chat/completions", response_model=None)
def chat(body: ChatRequest, request: Request, model: Served = Depends(served)) -> Response:
    model.check_model(body)
    prompt = model.generator.chat_prompt(body)
    max_tokens = model.generator.budget(prompt, body.max_completion_tokens or body.max_tokens)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model.settings.model_name}
    return model.respond(request, body, prompt, max_tokens, head, CHAT)


@router.post("/completions", response_model=None)
def complete(body: CompletionRequest, request: Request, model: Served = Depends(served)) -> Response:
    model.check_model(body)
    prompt = model.generator.completion_prompt(body)
    scoring = body.echo or body.logprobs is not None
    if scoring and body.stream:
        raise ApiError(400, "echo and logprobs come with whole replies: ask for them without stream")
    if body.max_tokens == 0 and not body.echo:
        raise ApiError(400, "max_tokens 0 generates nothing: it is for scoring a prompt with echo")
    max_tokens = model.generator.budget(prompt, 16 if body.max_tokens is None else body.max_tokens)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model.settings.model_name}
    scored = functools.partial(model.generator.scored_choice, body, prompt) if scoring else None
    return model.respond(request, body, prompt, max_tokens, head, COMPLETION, scored)
