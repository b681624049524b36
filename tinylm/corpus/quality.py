"""Quality filters: each rule has a name, so drops are counted by reason.

The rules follow Gopher and FineWeb. Chinese has no spaces, so where those count words
the Chinese side counts characters.
"""

from __future__ import annotations

import re
from collections import Counter

from tinylm.config import FilterConfig
from tinylm.corpus.language import CJK_CHARACTERS, LATIN_CHARACTERS

# Symbols, not punctuation: punctuation is dense in good classical Chinese, while runs
# of these mark tables, navigation, ASCII art and markup debris.
_SYMBOL = re.compile(r"[#$%&*+<=>@\\^_`|~/\u2190-\u21ff\u2200-\u22ff\u2500-\u25ff\u2600-\u27bf]")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")
_TERMINAL_PUNCTUATION = tuple(".!?。！？…\"'”’）)」』;；:：")


_MIN_UNITS_FOR_REPETITION = 100


def _top_bigram_share(units: list[str]) -> float:
    """Share of characters covered by the most frequent 2-gram of units (words or characters).

    Texts under 100 units are not judged: in a short line one name pair can fill a fifth
    of it without anything being wrong.
    """
    if len(units) < _MIN_UNITS_FOR_REPETITION:
        return 0.0
    bigrams = Counter(zip(units, units[1:]))
    (first, second), count = bigrams.most_common(1)[0]
    total = sum(len(unit) for unit in units)
    return count * (len(first) + len(second)) / total


def quality_failure(text: str, lang: str | None, config: FilterConfig) -> str | None:
    """The name of the first rule `text` breaks, or None when it passes all of them."""
    length = len(text)
    if length < config.min_chars:
        return "too_short"
    if length > config.max_chars:
        return "too_long"
    chinese = lang == "zh"
    words = None if chinese else _WORD.findall(text.lower())
    if words is not None and len(words) < config.min_words:
        return "too_few_words"
    cjk, latin = len(CJK_CHARACTERS.findall(text)), len(LATIN_CHARACTERS.findall(text))
    letters = cjk + latin
    own = cjk if chinese else latin
    if letters == 0 or own / letters < config.min_script_share:
        return "wrong_script"
    if len(_SYMBOL.findall(text)) / length > config.max_symbol_share:
        return "too_many_symbols"
    if len(_DIGIT.findall(text)) / length > config.max_digit_share:
        return "too_many_digits"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and 1 - len(set(lines)) / len(lines) > config.max_duplicate_line_share:
        return "repeated_lines"
    units = list(_SPACES.sub("", text)) if chinese else words
    if _top_bigram_share(units) > config.max_top_ngram_share:
        return "repeated_ngrams"
    if (
        len(lines) >= 3
        and sum(line.endswith(_TERMINAL_PUNCTUATION) for line in lines) / len(lines) < config.min_punctuated_line_share
    ):
        return "unpunctuated_lines"
    return None
