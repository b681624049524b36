"""Quality filters: each rule has a name, so drops are counted by reason.

The rules follow Gopher and FineWeb. Chinese and Japanese have no spaces, so where those
count words they count characters.
"""

from __future__ import annotations

import re
from collections import Counter

from tinylm.config import FilterConfig
from tinylm.corpus.language import (
    CJK_CHARACTERS,
    HANGUL_CHARACTERS,
    KANA_CHARACTERS,
    LATIN_CHARACTERS,
    written_in_characters,
)

# Symbols, not punctuation: punctuation is dense in good classical Chinese, while runs
# of these mark tables, navigation, ASCII art and markup debris.
_SYMBOL = re.compile(r"[#$%&*+<=>@\\^_`|~/\u2190-\u21ff\u2200-\u22ff\u2500-\u25ff\u2600-\u27bf]")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_LATIN_WORD = re.compile(LATIN_CHARACTERS.pattern + "+")
# Languages the model labels that are written in neither Latin letters nor East Asian characters: their own script
# is every other letter.
_OTHER_SCRIPT_LANGUAGES = frozenset(
    "ru uk be bg mk sr kk ky mn tg tt ba cv ce os el he yi ar fa ur ps ckb ug sd dv hi mr ne sa bn as pa gu or ta te "
    "kn ml si th lo km my ka hy am ti bo dz".split()
)
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


def _letters_in_own_script(text: str, lang: str | None) -> tuple[int, int]:
    """The letters of `text`, and how many are in its language's script: Han for Chinese, Han and kana for Japanese,
    Hangul and Han for Korean, Latin for the rest but the languages written in another script.

    Beside Chinese and Japanese characters, a Latin word counts once, as a character is a word's worth: a zhwiki
    line naming YUI Compressor and JavaScript is Chinese. A zh/en corpus counts Han and Latin alone, as it always
    has; the other scripts join the count where language identification found a language that uses them.
    """
    han = len(CJK_CHARACTERS.findall(text))
    if lang == "zh":
        return han + len(_LATIN_WORD.findall(text)), han
    if lang == "ja":
        kana = len(KANA_CHARACTERS.findall(text))
        return han + kana + len(_LATIN_WORD.findall(text)), han + kana
    latin = len(LATIN_CHARACTERS.findall(text))
    if lang == "ko":
        hangul = len(HANGUL_CHARACTERS.findall(text))
        return han + hangul + latin, han + hangul
    if lang in _OTHER_SCRIPT_LANGUAGES:
        letters = len(_LETTER.findall(text))
        return letters, letters - han - latin
    return han + latin, latin


def quality_failure(text: str, lang: str | None, config: FilterConfig) -> str | None:
    """The name of the first rule `text` breaks, or None when it passes all of them."""
    length = len(text)
    if length < config.min_chars:
        return "too_short"
    if length > config.max_chars:
        return "too_long"
    chinese = written_in_characters(lang)
    words = None if chinese else _WORD.findall(text.lower())
    if words is not None and len(words) < config.min_words:
        return "too_few_words"
    letters, own = _letters_in_own_script(text, lang)
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
