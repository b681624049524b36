"""Convert stage: traditional to simplified Chinese, for documents detected as Chinese.

English (and any text under the CJK threshold) passes through byte-identical, so the
conversion never touches code, names or quotes in other scripts. Language detection
works on whole batches in numpy: a regex call per document cost as much as OpenCC's
conversion itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import opencc
import zhconv

from tinylm.config import ConvertConfig
from tinylm.storage.atomic import atomic_path

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
_LATIN_RANGES = ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))


def _character_class(ranges: tuple[tuple[int, int], ...]) -> re.Pattern[str]:
    return re.compile("[" + "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges) + "]")


# The same scripts as regular expressions, for code that judges one text at a time.
CJK_CHARACTERS = _character_class(_CJK_RANGES)
LATIN_CHARACTERS = _character_class(_LATIN_RANGES)
SAMPLE_CHARS = 1024
_LINES_PER_BATCH = 4096


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


def make_converter(config: ConvertConfig) -> Callable[[str], str]:
    if config.backend == "opencc":
        return opencc.OpenCC(config.opencc_config).convert
    locale = config.zhconv_locale
    return lambda text: zhconv.convert(text, locale)


def convert_texts(
    texts: Sequence[str], langs: Sequence[str | None], convert: Callable[[str], str], cjk_threshold: float
) -> tuple[list[str], list[str], int]:
    """Simplify the Chinese texts of a batch; returns texts, languages, and how many changed.

    A language already set (by the source) is trusted; missing ones are detected.
    """
    unknown = [index for index, lang in enumerate(langs) if not lang]
    detected = dict(zip(unknown, detect_languages([texts[i] for i in unknown], cjk_threshold)))
    resolved = [lang or detected[index] for index, lang in enumerate(langs)]
    converted, changed = [], 0
    for text, lang in zip(texts, resolved):
        result = convert(text) if lang == "zh" else text
        changed += result != text
        converted.append(result)
    return converted, resolved, changed


def convert_file(source: str | Path, target: str | Path, config: ConvertConfig) -> dict[str, int]:
    """Convert a text file line by line, like the `opencc` command, with the stage's own rules.

    Lines not detected as Chinese are copied unchanged; the output appears atomically.
    """
    convert = make_converter(config)
    stats = {"lines": 0, "converted": 0}
    with open(source, encoding="utf-8", errors="strict", newline="") as reader, atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as writer:
            while lines := reader.readlines(_LINES_PER_BATCH * 64):
                texts, _, changed = convert_texts(lines, [None] * len(lines), convert, config.cjk_threshold)
                writer.writelines(texts)
                stats["lines"] += len(lines)
                stats["converted"] += changed
    return stats
