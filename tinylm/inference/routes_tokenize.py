"""`/tokenize`, as vLLM's server offers it: how many tokens a prompt or a conversation takes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tinylm.inference.admission import ApiError
from tinylm.inference.server import ChatRequest, CompletionRequest, TokenizeRequest
from tinylm.inference.serving import Served, served

router = APIRouter()


@router.post("/tokenize")
def tokenize(request: TokenizeRequest, model: Served = Depends(served)) -> dict:
    """What a client needs to keep a conversation within the context (the chat page drops its oldest turns with
    it): the count, the context and the ids."""
    if (request.prompt is None) == (request.messages is None):
        raise ApiError(400, "give either prompt or messages")
    if request.messages is not None:
        ids = model.generator.chat_prompt(ChatRequest(messages=request.messages))
    else:
        ids = model.generator.completion_prompt(CompletionRequest(prompt=request.prompt))
    return {"count": len(ids), "max_model_len": model.generator.context, "tokens": ids}
