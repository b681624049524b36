"""Convert stage: traditional to simplified Chinese, wherever a text holds Han characters.

A text with no Han character passes through byte-identical, so the conversion never
touches code, names or quotes in other scripts. A text with some (an English line that
names 壓縮器, a title) is converted whatever its language, except Japanese and Korean,
whose kanji and hanja are their own forms, not traditional Chinese: the language decides
which filters apply to a document, never whether its traditional characters survive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import opencc
import zhconv

from tinylm.config import ConvertConfig
from tinylm.corpus.language import CJK_CHARACTERS, detect_languages
from tinylm.stats import Stats
from tinylm.storage.atomic import atomic_path

_LINES_PER_BATCH = 4096
_OWN_HAN_FORMS = frozenset({"ja", "ko"})


def make_converter(config: ConvertConfig) -> Callable[[str], str]:
    if config.backend == "opencc":
        return opencc.OpenCC(config.opencc_config).convert
    locale = config.zhconv_locale
    return lambda text: zhconv.convert(text, locale)


class SourceConverters:
    """Each document source's converter (its own OpenCC config by `source_configs`, or the run's), built once per
    source: a Taiwan-written source converts with tw2sp while the rest use t2s."""

    def __init__(self, config: ConvertConfig) -> None:
        self.config = config
        self._by_source: dict[str, tuple[str, Callable[[str], str]]] = {}

    def for_source(self, source: str) -> tuple[str, Callable[[str], str]]:
        """The conversion's name, as the stats count it (the OpenCC config, or zhconv and its target), and the
        converter."""
        if source not in self._by_source:
            settings = self.config.for_source(source)
            name = settings.opencc_config if settings.backend == "opencc" else f"zhconv-{settings.zhconv_locale}"
            self._by_source[source] = name, make_converter(settings)
        return self._by_source[source]


def has_han(text: str) -> bool:
    """Whether `text` holds a Han character; ASCII text, most of an English corpus, is ruled out at C speed."""
    return not text.isascii() and CJK_CHARACTERS.search(text) is not None


def simplified(text: str | None, convert: Callable[[str], str]) -> str | None:
    """A short field (a title) converted when it holds Han characters, else as it is."""
    return convert(text) if text and has_han(text) else text


def convert_texts(
    texts: Sequence[str],
    langs: Sequence[str | None],
    convert: Callable[[str], str] | Sequence[Callable[[str], str]],
    cjk_threshold: float,
    detect_on: Sequence[str] | None = None,
    identify: str = "script",
) -> tuple[list[str], list[str], int]:
    """Simplify the texts of a batch that are Chinese or hold Han characters; returns texts, languages,
    and how many changed.

    A language already set (by the source) is trusted; missing ones are detected, on `detect_on`
    where given (the texts without their chat markers, whose Latin letters would tip the balance), the way
    `identify` names (`convert.language_id`). `convert` is one converter, or one per text (by its source).
    """
    converters = convert if isinstance(convert, Sequence) else [convert] * len(texts)
    detect_on = texts if detect_on is None else detect_on
    unknown = [index for index, lang in enumerate(langs) if not lang]
    detected = dict(zip(unknown, detect_languages([detect_on[i] for i in unknown], cjk_threshold, identify)))
    resolved = [lang or detected[index] for index, lang in enumerate(langs)]
    converted, changed = [], 0
    for text, lang, convert_one in zip(texts, resolved, converters):
        result = convert_one(text) if lang == "zh" or (lang not in _OWN_HAN_FORMS and has_han(text)) else text
        changed += result != text
        converted.append(result)
    return converted, resolved, changed


def convert_file(source: str | Path, target: str | Path, config: ConvertConfig) -> dict[str, int]:
    """Convert a text file line by line, like the `opencc` command, with the stage's own rules.

    Lines not detected as Chinese are copied unchanged; the output appears atomically.
    """
    convert = make_converter(config)
    stats = Stats("lines", "converted")
    with open(source, encoding="utf-8", errors="strict", newline="") as reader, atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as writer:
            while lines := reader.readlines(_LINES_PER_BATCH * 64):
                langs = [None] * len(lines)
                texts, _, changed = convert_texts(lines, langs, convert, config.cjk_threshold, None, config.language_id)
                writer.writelines(texts)
                stats.update("lines", len(lines))
                stats.update("converted", changed)
    return stats.as_dict()
