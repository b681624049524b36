"""Quality filters: each returns the name of the rule a text breaks, so drops are counted by reason."""

from __future__ import annotations

import re

from tinylm.config import FilterConfig

_SYMBOL = re.compile(r"[^\w\s]")


def quality_failure(text: str, config: FilterConfig) -> str | None:
    """The first rule `text` breaks, or None when it passes all of them."""
    length = len(text)
    if length < config.min_chars:
        return "too_short"
    if length > config.max_chars:
        return "too_long"
    if len(_SYMBOL.findall(text)) / length > config.max_symbol_ratio:
        return "too_many_symbols"
    return None
