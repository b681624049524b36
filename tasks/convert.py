"""Convert stage: traditional to simplified Chinese, for documents detected as Chinese.

English (and any text under the CJK threshold) passes through byte-identical, so the
conversion never touches code, names or quotes in other scripts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import opencc
import zhconv

from tinylm.config import ConvertConfig

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def detect_language(text: str, cjk_threshold: float) -> str:
    """'zh' when CJK characters make up at least `cjk_threshold` of the letters, else 'en' (or 'und')."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk + latin == 0:
        return "und"
    return "zh" if cjk / (cjk + latin) >= cjk_threshold else "en"


def make_converter(config: ConvertConfig) -> Callable[[str], str]:
    if config.backend == "opencc":
        return opencc.OpenCC(config.opencc_config).convert
    locale = config.zhconv_locale
    return lambda text: zhconv.convert(text, locale)
