"""Final answers read and compared the way the field's math rewards do, so GRPO learns from right answers only.

The comparison is math-verify's (what TRL's `accuracy_reward` uses): LaTeX with nested braces, fractions,
percentages, sets, intervals and equations parsed into sympy and compared as values, so `\\frac{14}{3}`, `14/3`
and `4\\frac{2}{3}` agree and `1/3` equals `2/6`. What math-verify does not do, tinylm adds in front of it:

- Chinese answer phrases (答案是, 答案为, 答：, 故选, 所以选) and GSM8K's `####` mark where the final answer
  starts; math-verify only anchors on English ones, and a full-width colon before a number hides the number
  from it (`答案：72元`).
- Choice letters (`故选：D`, `答案是 AC`) compared as a set of letters: math-verify would read `B` as a symbol.
- Several blanks in one reference (`$5$;$10$`, Qwen2.5-Math's gaokao cloze): every blank must be answered, in
  order.

A reference (a record's answer, or its worked solution) is parsed once and with the same rules as a completion, and
never falls back to "its last number": a reference it cannot read is reported, not turned into a number a wrong
completion might match.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

from tinylm.tokens.tokenizer_files import THINK_END

# A completion's text is read from its tail: a reasoning model's answer comes last, and parsing is bounded.
MAX_ANSWER_CHARS = 4000
# Where a final answer starts: GSM8K's mark, the Chinese and English answer phrases, last one wins.
_ANSWER_MARK = re.compile(
    r"####|(?:最终|正确)?答案\s*(?:应该|应)?\s*(?:是|为|选|:|：)\s*[:：]?|(?<![\u4e00-\u9fff])答\s*[:：]|"
    r"故选\s*[:：]?|所以选\s*[:：]?|应选\s*[:：]?|(?i:the\s+(?:final\s+)?answer\s+is\s*:?|final\s+answer\s*:|answer\s*:)"
)
# Choice letters at the start of an answer (`D`, `(C)`, `\\text{AC}`, `B、D`), not a word or an equation (`A=5`).
_CHOICE_LETTERS = re.compile(
    r"^[\s*$(（\[]*(?:\\text\{|\\mathrm\{|\\textbf\{)?\s*[(（]?([A-H](?:\s*[,，、和]?\s*[A-H])*)[)）]?(?![A-Za-z0-9=+\-^_])"
)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_BLANKS = re.compile(r"\s*[;；]\s*")
_END_OF_ANSWER = re.compile(r"\n\s*\n|(?<=[。！？])|\.\s+(?=[A-Z])")


@dataclass(frozen=True)
class Reference:
    """A reference answer as parsed once: choice letters, or one or more blanks each parsed by math-verify."""

    text: str
    choices: frozenset[str] | None
    blanks: tuple[tuple[Any, ...], ...]

    @property
    def readable(self) -> bool:
        return self.choices is not None or (bool(self.blanks) and all(self.blanks))


def final_answer_span(text: str) -> str:
    """Where a text states its answer: after its reasoning (`</think>`), the last answer phrase or `####` to the
    end of its sentence; the whole text (for math-verify's own `\\boxed{}` and English anchors) when it has none or
    boxes its answer."""
    text = text.rsplit(THINK_END, 1)[-1][-MAX_ANSWER_CHARS:]
    if "\\boxed" in text or "\\fbox" in text:
        return text
    marks = list(_ANSWER_MARK.finditer(text))
    if not marks:
        return text
    rest = text[marks[-1].end() :].strip()
    return _END_OF_ANSWER.split(rest, maxsplit=1)[0].strip()


def _timeout() -> int | None:
    """math-verify bounds a parse with SIGALRM, which only the main thread may use; elsewhere the answer's length
    (`MAX_ANSWER_CHARS`) is the bound."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> tuple[Any, ...]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    seconds = _timeout()
    try:
        return tuple(
            parse(
                text,
                extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
                parsing_timeout=seconds,
            )
        )
    except Exception:  # math-verify raises on a parse it gave up on (a timeout, sympy's recursion): no answer
        return ()


def _as_latex(blank: str) -> str:
    """A bare reference value as math-verify reads it best: inside `$...$` unless it already has math delimiters."""
    blank = blank.strip()
    return blank if "$" in blank or "\\(" in blank or "\\[" in blank or "\\boxed" in blank else f"${blank}$"


def _choice_letters(span: str) -> frozenset[str] | None:
    """The choice letters an answer starts with (its last `\\boxed{}` if it boxes one), or None."""
    boxed = _BOXED.findall(span)
    match = _CHOICE_LETTERS.match(boxed[-1] if boxed else span)
    return frozenset(re.findall(r"[A-H]", match.group(1))) if match else None


@functools.lru_cache(maxsize=8192)
def parse_reference(reference: str) -> Reference:
    """A record's answer as a Reference: a worked solution (GSM8K's `#### 72`, MATH's `\\boxed{}`, an answer
    phrase) is read where it states its answer; a bare value (`72`, `\\frac{14}{3}`, `$5$;$10$`, `AC`) is the
    answer itself. Cached: a prompt's reference is parsed once however many completions it gets."""
    reference = str(reference).strip()
    solution = "\\boxed" in reference or "\\fbox" in reference or bool(_ANSWER_MARK.search(reference))
    span = final_answer_span(reference) if solution else reference
    core = _BOXED.findall(span)[-1] if "\\boxed" in span else span
    if re.fullmatch(r"[\s$(（]*(?:\\text\{)?[A-H](?:\s*[,，、和]?\s*[A-H]){0,7}\}?[\s$)）.。]*", core):
        return Reference(reference, _choice_letters(core), ())
    if solution:
        return Reference(reference, None, (_parse(span),))
    blanks = [blank for blank in _BLANKS.split(span) if blank.strip()]
    return Reference(reference, None, tuple(_parse(_as_latex(blank)) for blank in blanks))


def _verify(expected: tuple[Any, ...], found: tuple[Any, ...]) -> bool:
    from math_verify import verify

    try:
        return bool(expected and found and verify(list(expected), list(found), timeout_seconds=_timeout()))
    except Exception:  # a comparison math-verify gave up on is not a match
        return False


def _readings(span: str) -> list[tuple[Any, ...]]:
    """What an answer may mean: math-verify's reading of it, and for a short bare one (`1:9`, `3<m<4`, written
    without `$`) also its reading as LaTeX, the way a bare reference is read."""
    readings = [_parse(span)]
    if len(span) <= 200 and _as_latex(span) != span:
        readings.append(_parse(_as_latex(span)))
    return readings


def is_correct(completion: str, reference: Reference) -> bool:
    """Whether a completion's final answer is the reference's: the same choice letters, or each blank's value (in
    order, separated by `;` as the reference separates them) equal by math-verify."""
    if not reference.readable:
        return False
    span = final_answer_span(completion)
    if reference.choices is not None:
        return _choice_letters(span) == reference.choices
    if len(reference.blanks) == 1:
        return any(_verify(reference.blanks[0], found) for found in _readings(span))
    found = _BOXED.findall(span) or [blank for blank in _BLANKS.split(span) if blank.strip()]
    return len(found) == len(reference.blanks) and all(
        _verify(expected, _parse(_as_latex(blank))) for expected, blank in zip(reference.blanks, found)
    )
