"""The routes a browser or a load balancer opens without the key: the web chat page and `/health`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from tinylm.inference.serving import Served, served

CHAT_PAGE = Path(__file__).with_name("chat_page.html")
PUBLIC_PATHS = frozenset({"/", "/health"})

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def chat_page() -> str:
    """The web chat: a static page, public because a browser cannot send the key to open it; it holds no data, and
    asks for the key that the API routes it calls require."""
    return CHAT_PAGE.read_text(encoding="utf-8")


@router.get("/health")
def health(model: Served = Depends(served)) -> dict:
    """For a load balancer or a dashboard, without the key: whether the server answers, and how full it is."""
    limits = {"max_running": model.settings.max_running, "max_waiting": model.settings.max_waiting}
    return {"status": "ok", "running": model.slots.busy, "waiting": model.slots.queued} | limits
