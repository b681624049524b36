"""Convert stage: traditional to simplified Chinese, wherever a text holds Han characters.

Text written in Taiwan's or Hong Kong's words gets that region's character forms and vetted words, where the forms
and words it uses show it (`variants.py`); the rest gets plain t2s.

A text with no Han character passes through byte-identical, so the conversion never
touches code, names or quotes in other scripts. A text with some (an English line that
names 壓縮器, a title) is converted whatever its language, except Japanese and Korean,
whose kanji and hanja are their own forms, not traditional Chinese: the language decides
which filters apply to a document, never whether its traditional characters survive.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import opencc
import zhconv

from tinylm.config import ConvertConfig
from tinylm.corpus.language import CJK_CHARACTERS, detect_languages
from tinylm.corpus.variants import REGION_CONVERSIONS, Region, RegionDetector, region_converters
from tinylm.stats import Stats
from tinylm.storage.atomic import atomic_path

_LINES_PER_BATCH = 4096
_OWN_HAN_FORMS = frozenset({"ja", "ko"})


class Converter:
    """Traditional to simplified by one configuration; `converted` also names the conversion a text got, for the
    stats."""

    def __init__(self, name: str, convert: Callable[[str], str]) -> None:
        self.name = name
        self._convert = convert

    def __call__(self, text: str) -> str:
        return self.converted(text)[0]

    def converted(self, text: str) -> tuple[str, str, Region | None]:
        """The text converted, the conversion's name, and the region its words were found to be from (None: not
        looked for, or no region's)."""
        return self._convert(text), self.name, None


class RegionalConverter(Converter):
    """t2s, or Taiwan's or Hong Kong's forms and vetted words for a text that shows it was written there."""

    def __init__(self) -> None:
        super().__init__("t2s", opencc.OpenCC("t2s").convert)
        self._detector = _region_detector()
        self._regions = region_converters()

    def converted(self, text: str) -> tuple[str, str, Region | None]:
        region = self._detector.region(text)
        if region is None:
            return self._convert(text), self.name, None
        return self._regions[region](text), REGION_CONVERSIONS[region], region


@functools.cache
def _region_detector() -> RegionDetector:
    return RegionDetector()


def make_converter(config: ConvertConfig) -> Converter:
    if config.backend == "zhconv":
        locale = config.zhconv_locale
        return Converter(f"zhconv-{locale}", lambda text: zhconv.convert(text, locale))
    if config.detect_regions and config.opencc_config == "t2s":
        return RegionalConverter()
    return Converter(config.opencc_config, opencc.OpenCC(config.opencc_config).convert)


class SourceConverters:
    """Each document source's converter (its own OpenCC config by `source_configs`, or the run's), built once per
    source: a Taiwan-written source converts with tw2sp while the rest use t2s."""

    def __init__(self, config: ConvertConfig) -> None:
        self.config = config
        self._by_source: dict[str, Converter] = {}

    def for_source(self, source: str) -> Converter:
        if source not in self._by_source:
            self._by_source[source] = make_converter(self.config.for_source(source))
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
    convert: Converter | Sequence[Converter],
    cjk_threshold: float,
    detect_on: Sequence[str] | None = None,
    identify: str = "script",
) -> tuple[list[str], list[str], list[tuple[str, Region | None] | None]]:
    """Simplify the texts of a batch that are Chinese or hold Han characters; returns texts, languages,
    and for each text the conversion that changed it and the region its words are from (None: unchanged).

    A language already set (by the source) is trusted; missing ones are detected, on `detect_on`
    where given (the texts without their chat markers, whose Latin letters would tip the balance), the way
    `identify` names (`convert.language_id`). `convert` is one converter, or one per text (by its source).
    """
    converters = convert if isinstance(convert, Sequence) else [convert] * len(texts)
    detect_on = texts if detect_on is None else detect_on
    unknown = [index for index, lang in enumerate(langs) if not lang]
    detected = dict(zip(unknown, detect_languages([detect_on[i] for i in unknown], cjk_threshold, identify)))
    resolved = [lang or detected[index] for index, lang in enumerate(langs)]
    converted, conversions = [], []
    for text, lang, converter in zip(texts, resolved, converters):
        if lang == "zh" or (lang not in _OWN_HAN_FORMS and has_han(text)):
            result, name, region = converter.converted(text)
        else:
            result, name, region = text, "", None
        conversions.append((name, region) if result != text else None)
        converted.append(result)
    return converted, resolved, conversions


def convert_file(source: str | Path, target: str | Path, config: ConvertConfig) -> dict[str, int]:
    """Convert a text file line by line, like the `opencc` command, with the stage's own rules.

    Lines not detected as Chinese are copied unchanged; the output appears atomically.
    """
    convert = make_converter(config)
    stats = Stats("lines", "converted", groups=("converted_variant",))
    with open(source, encoding="utf-8", errors="strict", newline="") as reader, atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as writer:
            while lines := reader.readlines(_LINES_PER_BATCH * 64):
                langs = [None] * len(lines)
                texts, _, conversions = convert_texts(
                    lines, langs, convert, config.cjk_threshold, None, config.language_id
                )
                writer.writelines(texts)
                stats.update("lines", len(lines))
                for conversion in filter(None, conversions):
                    stats.update("converted")
                    if conversion[1] is not None:
                        stats.update(f"converted_variant.{conversion[1]}")
    return stats.as_dict()
