"""The built-in quality rules (rules.py says what a rule is): each has a name in `filters.rules` and the reasons it
counts, so drops are counted by reason.

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
)
from tinylm.corpus.rules import Judged, Rule, RuleChain, rule_chain, rule_sources

# Symbols, not punctuation: punctuation is dense in good classical Chinese, while runs
# of these mark tables, navigation, ASCII art and markup debris.
_SYMBOL = re.compile(r"[#$%&*+<=>@\\^_`|~/\u2190-\u21ff\u2200-\u22ff\u2500-\u25ff\u2600-\u27bf]")
_DIGIT = re.compile(r"\d")
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


class Length(Rule):
    """Stubs and runaway documents (a dump's concatenated pages)."""

    reasons = ("too_short", "too_long")
    fields = ("min_chars", "max_chars")

    def failure(self, document: Judged) -> str | None:
        length = len(document.text)
        return (
            "too_short"
            if length < self.settings.min_chars
            else "too_long"
            if length > self.settings.max_chars
            else None
        )


class WordCount(Rule):
    """Gopher's minimum of words, for texts written in words (a Chinese text's length is its Length)."""

    reasons = ("too_few_words",)
    fields = ("min_words",)

    def failure(self, document: Judged) -> str | None:
        few = not document.chinese and len(document.words) < self.settings.min_words
        return "too_few_words" if few else None


class Script(Rule):
    """Letters mostly in the document's own script: a page labelled English that is Chinese, mojibake."""

    reasons = ("wrong_script",)
    fields = ("min_script_share",)

    def failure(self, document: Judged) -> str | None:
        letters, own = _letters_in_own_script(document.text, document.lang)
        return "wrong_script" if letters == 0 or own / letters < self.settings.min_script_share else None


class Symbols(Rule):
    """Runs of symbols: tables, navigation, ASCII art, markup debris."""

    reasons = ("too_many_symbols",)
    fields = ("max_symbol_share",)

    def failure(self, document: Judged) -> str | None:
        share = len(_SYMBOL.findall(document.text)) / max(len(document.text), 1)
        return "too_many_symbols" if share > self.settings.max_symbol_share else None


class Digits(Rule):
    """Tables of numbers, price lists, logs."""

    reasons = ("too_many_digits",)
    fields = ("max_digit_share",)

    def failure(self, document: Judged) -> str | None:
        share = len(_DIGIT.findall(document.text)) / max(len(document.text), 1)
        return "too_many_digits" if share > self.settings.max_digit_share else None


class RepeatedLines(Rule):
    """Boilerplate lines repeated through a page (Gopher's duplicate-line fraction)."""

    reasons = ("repeated_lines",)
    fields = ("max_duplicate_line_share",)

    def failure(self, document: Judged) -> str | None:
        lines = document.lines
        repeated = len(lines) > 1 and 1 - len(set(lines)) / len(lines) > self.settings.max_duplicate_line_share
        return "repeated_lines" if repeated else None


class RepeatedNgrams(Rule):
    """Spam that repeats a phrase (Gopher's top 2-gram share; characters for Chinese)."""

    reasons = ("repeated_ngrams",)
    fields = ("max_top_ngram_share",)

    def failure(self, document: Judged) -> str | None:
        units = list(_SPACES.sub("", document.text)) if document.chinese else document.words
        return "repeated_ngrams" if _top_bigram_share(units) > self.settings.max_top_ngram_share else None


class Punctuation(Rule):
    """Lists and menus: documents of 3+ lines whose lines rarely end a sentence (FineWeb's line-punctuation rule)."""

    reasons = ("unpunctuated_lines",)
    fields = ("min_punctuated_line_share",)

    def failure(self, document: Judged) -> str | None:
        lines = document.lines
        if len(lines) < 3:
            return None
        punctuated = sum(line.endswith(_TERMINAL_PUNCTUATION) for line in lines) / len(lines)
        return "unpunctuated_lines" if punctuated < self.settings.min_punctuated_line_share else None


# The built-in rules by the name `filters.rules` gives them; its default is this order, cheapest first.
BUILT_IN_RULES: dict[str, type[Rule]] = {
    "length": Length,
    "words": WordCount,
    "script": Script,
    "symbols": Symbols,
    "digits": Digits,
    "repeated_lines": RepeatedLines,
    "repeated_ngrams": RepeatedNgrams,
    "punctuation": Punctuation,
}


def quality_rules(filters: FilterConfig) -> RuleChain:
    """The chain of rules `filters.rules` names, in its order."""
    return rule_chain(filters, BUILT_IN_RULES)


def user_rule_files(filters: FilterConfig) -> list[str]:
    """The source files of the user rules `filters` names: what a stage's fingerprint hashes besides its inputs, so an
    edited rule re-runs the filters."""
    return rule_sources(filters, BUILT_IN_RULES)
