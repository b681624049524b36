"""Which script a text is written in: 'zh' or 'en', decided for whole batches at once.

Detection works on whole batches in numpy: a regex call per document cost as much as
OpenCC's conversion itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
_LATIN_RANGES = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))


def _character_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges) + "]")


# The same scripts as regular expressions, for code that judges one text at a time.
CJK_CHARACTERS = _character_class(_CJK_RANGES)
LATIN_CHARACTERS = _character_class(_LATIN_RANGES)
SAMPLE_CHARS = 1024


_OTHER, _CJK, _LATIN = 0, 1, 2


@functools.cache
def _script_table() -> np.ndarray:
    """The script class of every code point: one lookup instead of a comparison per range."""
    table = np.full(0x110000, _OTHER, dtype=np.uint8)
    for script, ranges in ((_CJK, _CJK_RANGES), (_LATIN, _LATIN_RANGES)):
        for low, high in ranges:
            table[low : high + 1] = script
    return table


def detect_languages(texts: Sequence[str], cjk_threshold: float) -> list[str]:
    """'zh' where CJK makes up at least `cjk_threshold` of the letters, else 'en' ('und' with no letters).

    Judged on each text's first `SAMPLE_CHARS` characters, enough to tell the language of a
    document and bounded for a 50 MB one.
    """
    samples = [text[:SAMPLE_CHARS] for text in texts]
    points = np.frombuffer("".join(samples).encode("utf-32-le"), dtype="<u4")
    lengths = np.array([len(sample) for sample in samples], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths

    def per_text(mask: np.ndarray) -> np.ndarray:
        running = np.concatenate(([0], np.cumsum(mask)))
        return running[ends] - running[starts]

    scripts = _script_table()[points]
    cjk, latin = per_text(scripts == _CJK), per_text(scripts == _LATIN)
    letters = cjk + latin
    return ["und" if total == 0 else "zh" if c / total >= cjk_threshold else "en" for c, total in zip(cjk, letters)]
