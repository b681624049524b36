"""Which language a text is in, decided for whole batches at once.

Two ways, chosen by `convert.language_id`:

- `script`: 'zh' where Han characters reach `cjk_threshold` of the letters, else 'en'
  ('und' with no letters). Fast, and all a zh/en corpus needs.
- `fasttext` (the default): the East Asian languages by their scripts, every other
  language by fastText's lid.176 model (`language_model.py`). Kana make a text Japanese,
  Hangul Korean, Han characters alone Chinese: measured on real Tatoeba sentences and
  Zuozhuan, the model alone called one classical Chinese line in nine Japanese, and
  scripts never do (bench/language_id.py).

Counting scripts works on whole batches in numpy: a regex call per document cost as much
as OpenCC's conversion itself.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
_LATIN_RANGES = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))
_KANA_RANGES = ((0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_HANGUL_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))


def _character_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges) + "]")


# The same scripts as regular expressions, for code that judges one text at a time.
CJK_CHARACTERS = _character_class(_CJK_RANGES)
LATIN_CHARACTERS = _character_class(_LATIN_RANGES)
KANA_CHARACTERS = _character_class(_KANA_RANGES)
HANGUL_CHARACTERS = _character_class(_HANGUL_RANGES)
SAMPLE_CHARS = 1024
# Languages written without spaces between words: their units are characters (filters, MinHash shingles).
CHARACTER_LANGUAGES = frozenset({"zh", "ja"})
# Below this share of kana among a text's East Asian characters, Han characters make it Chinese: Japanese prose
# runs at 30 to 60 percent kana, and a Chinese text naming a Japanese title holds a few.
_KANA_SHARE_OF_JAPANESE = 0.1
_HANGUL_SHARE_OF_KOREAN = 0.3

_NOT_A_LETTER, _OTHER_LETTER, _CJK, _LATIN, _KANA, _HANGUL = range(6)
_CLASSES = 6


def written_in_characters(lang: str | None) -> bool:
    return lang in CHARACTER_LANGUAGES


@functools.cache
def _script_table() -> np.ndarray:
    """The script class of every code point: one lookup instead of a comparison per range. Letters of other scripts
    (Cyrillic, Arabic, Devanagari…) are told apart from digits and punctuation up to the last CJK extension (0.2 s
    once per process); above it, only private use and unassigned points remain."""
    table = np.full(0x110000, _NOT_A_LETTER, dtype=np.uint8)
    named = _CJK_RANGES[-1][1] + 1
    table[[point for point in range(named) if unicodedata.category(chr(point)).startswith("L")]] = _OTHER_LETTER
    scripts = {_CJK: _CJK_RANGES, _LATIN: _LATIN_RANGES, _KANA: _KANA_RANGES, _HANGUL: _HANGUL_RANGES}
    for script, ranges in scripts.items():
        for low, high in ranges:
            table[low : high + 1] = script
    return table


def _script_counts(texts: Sequence[str]) -> np.ndarray:
    """Per text (a row), how many of its first `SAMPLE_CHARS` characters are in each script class (a column), for a
    whole batch in two numpy passes."""
    samples = [text[:SAMPLE_CHARS] for text in texts]
    points = np.frombuffer("".join(samples).encode("utf-32-le"), dtype="<u4")
    owners = np.repeat(np.arange(len(samples)), [len(sample) for sample in samples])
    classes = _script_table()[points]
    return np.bincount(owners * _CLASSES + classes, minlength=len(samples) * _CLASSES).reshape(-1, _CLASSES)


def detect_languages(texts: Sequence[str], cjk_threshold: float, identify: str = "script") -> list[str]:
    """The language of each text (ISO 639-1 where one exists), judged on its first `SAMPLE_CHARS` characters, enough
    to tell the language of a document and bounded for a 50 MB one.

    `script`: 'zh' where Han characters are at least `cjk_threshold` of the Han and Latin letters, else 'en', 'und'
    with no letters. `fasttext`: where East Asian characters reach that share, 'ko', 'ja' or 'zh' by Hangul and kana;
    any other text with letters is labelled by fastText's model.
    """
    counts = _script_counts(texts)
    han, latin = counts[:, _CJK], counts[:, _LATIN]
    if identify == "script":
        letters = han + latin
        labels = np.where(han >= cjk_threshold * letters, "zh", "en")
        return np.where(letters == 0, "und", labels).tolist()
    kana, hangul = counts[:, _KANA], counts[:, _HANGUL]
    east = han + kana + hangul
    letters = east + latin + counts[:, _OTHER_LETTER]
    east_asian = east >= cjk_threshold * letters
    korean = east_asian & (hangul >= _HANGUL_SHARE_OF_KOREAN * east)
    japanese = east_asian & ~korean & (kana >= _KANA_SHARE_OF_JAPANESE * east)
    choices = [letters == 0, korean, japanese, east_asian]
    labels = np.select(choices, ["und", "ko", "ja", "zh"], default="").tolist()
    rest = [index for index, label in enumerate(labels) if not label]
    if rest:
        from tinylm.corpus.language_model import model_languages

        for index, label in zip(rest, model_languages([texts[index][:SAMPLE_CHARS] for index in rest])):
            labels[index] = label
    return labels
