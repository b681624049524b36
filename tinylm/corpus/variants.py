"""Which region's words a traditional Chinese text is written in: Taiwan's, Hong Kong's, or neither.

t2s converts characters, so a Taiwan-written text comes out simplified but in Taiwan's words (义大利, 滑鼠, 程式
where mainland readers write 意大利, 鼠标, 程序). OpenCC's Taiwan and Hong Kong configs convert those words too,
but only for text written there: applied to everything they would rewrite a classical 程式 ("rule") as 程序. So a
text is given a region only on evidence it shows:

- Taiwan: Taiwan's words for what mainland writing names otherwise (`TAIWAN_WORDS`: 滑鼠, 軟體, 義大利). Not
  the whole of OpenCC's Taiwan phrase table, which also rewrites words every region writes (建立, 執行, 呼叫 as
  创建, 运行, 调用: in 2 of every 100 lines of the Zuozhuan, converted to traditional, it finds a "Taiwan" word),
  nor Taiwan's character forms, which its table lists against the standard's (才, 著 for 纔, 着) and everyone writes.
- Hong Kong: the forms only Hong Kong's standard uses (綫, 衞, 説: OpenCC's HKVariants table, less the forms
  Taiwan's table or simplified Chinese share, such as 户 and 温), and Hong Kong and Cantonese words no OpenCC table
  carries (`HONG_KONG_WORDS`).

A text goes by the region more of its evidence names; a tie (Hong Kong writing shares much of Taiwan's modern
vocabulary: Android's Hong Kong strings write 應用程式 and 影片) or no evidence leaves it to t2s.

What a region's text gets must never change what it says, so it is the region's character forms (OpenCC's tw2s or
hk2s, no phrase table) and a vetted list of words that mean one thing wherever they appear (`region_words.toml`:
軟體 → 软件, 資料庫 → 数据库, 義大利 → 意大利), never OpenCC's phrase tables (tw2sp, hk2sp), which rewrite ordinary
words in their IT sense: 日高本線上的車站 became 日高本在线的站, 人類智慧 人类智能, and on a mainland article with a
few traditional link titles 应用程序空间 became 应用进程空间. `bench/convert.py` counts meaning changes on real
sentences where a phrase table would make one (0), beside OpenCC's own variant cases.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import opencc

Region = Literal["tw", "hk"]
Evidence = Literal["taiwan", "hong_kong"]
# The conversion each region's text gets, as the stats name it: the region's character forms, and its vetted words.
REGION_CONVERSIONS: dict[Region, str] = {"tw": "tw2s+words", "hk": "hk2s+words"}
_CHARACTER_CONFIGS: dict[Region, str] = {"tw": "tw2s", "hk": "hk2s"}
REGION_WORDS = Path(__file__).with_name("region_words.toml")
# Hong Kong words and Cantonese characters that no OpenCC table lists, and that Taiwan and the mainland do not write.
HONG_KONG_WORDS = (
    "嘅", "咗", "冇", "喺", "哋", "嘢", "啲", "嚟", "睇", "噉", "乜嘢", "佢",
    "私隱", "質素", "短訊", "電單車", "升降機", "雪櫃", "三文治", "屋邨", "貼士", "埋單", "按揭",
)  # fmt: skip
TAIWAN_WORDS = (
    "滑鼠", "軟體", "硬體", "韌體", "網路", "網際網路", "程式", "影片", "資訊", "數位", "螢幕", "記憶體", "硬碟",
    "隨身碟", "伺服器", "部落格", "簡訊", "預設", "解析度", "印表機", "列印", "視窗", "光碟", "登入", "介面", "物件",
    "資料庫", "筆電", "雷射", "奈米", "計程車", "捷運", "公車", "腳踏車", "鳳梨", "奇異果", "高麗菜", "優格",
    "義大利", "沙烏地阿拉伯", "紐西蘭", "雪梨", "寮國", "柬埔寨", "布希", "柯林頓", "歐巴馬", "川普", "普丁",
)  # fmt: skip
_CJK_BLOCKS = ((0x3400, 0x4DC0), (0x4E00, 0xA000))
# Forms Hong Kong's table lists that Taiwan writes as often (台灣, 濕度).
_WRITTEN_EVERYWHERE = frozenset("台濕")


@functools.cache
def region_converters() -> dict[Region, Callable[[str], str]]:
    """Each region's conversion: its vetted words replaced (guards left for the characters), then its forms."""
    table = tomllib.loads(REGION_WORDS.read_text(encoding="utf-8"))
    sections: dict[Region, str] = {"tw": "taiwan", "hk": "hong_kong"}
    return {
        region: _words_then_characters(table[section], table["guards"]["words"], _CHARACTER_CONFIGS[region])
        for region, section in sections.items()
    }


def _words_then_characters(words: dict[str, str], guards: list[str], config: str) -> Callable[[str], str]:
    """One pass over the text, longest match first, so a guard (軟體動物) wins over the word inside it (軟體)."""
    pattern = re.compile("|".join(sorted([*words, *guards], key=len, reverse=True)))
    characters = opencc.OpenCC(config).convert

    def convert(text: str) -> str:
        return characters(pattern.sub(lambda match: words.get(match.group(), match.group()), text))

    return convert


def _forms_changed_by(config: str) -> frozenset[str]:
    """The characters `config` rewrites on their own, read off OpenCC by converting every CJK character once."""
    characters = [chr(code) for start, end in _CJK_BLOCKS for code in range(start, end)]
    converted = opencc.OpenCC(config).convert("\n".join(characters)).split("\n")
    return frozenset(before for before, after in zip(characters, converted) if before != after)


class RegionDetector:
    """Counts each region's evidence in a text; built once per process (the tables are read off OpenCC)."""

    def __init__(self) -> None:
        simplified = _forms_changed_by("s2t")
        self._traditional = re.compile(f"[{''.join(sorted(_forms_changed_by('t2s')))}]")
        hong_kong = _forms_changed_by("hk2t") - _forms_changed_by("tw2t") - simplified - _WRITTEN_EVERYWHERE
        # Single characters in one class and words in one alternation of literals: mixed in one pattern, the
        # regex engine tries every alternative at every position, ten times slower than the two together.
        single = hong_kong | {word for word in HONG_KONG_WORDS if len(word) == 1}
        self._hong_kong_forms = re.compile(f"[{''.join(sorted(single))}]")
        self._hong_kong_words = re.compile("|".join(word for word in HONG_KONG_WORDS if len(word) > 1))
        self._taiwan = re.compile("|".join(TAIWAN_WORDS))

    def has_traditional(self, text: str) -> bool:
        return self._traditional.search(text) is not None

    def evidence(self, text: str) -> dict[Evidence, int]:
        """How many of each region's words and forms the text holds."""
        return {
            "taiwan": len(self._taiwan.findall(text)),
            "hong_kong": len(self._hong_kong_forms.findall(text)) + len(self._hong_kong_words.findall(text)),
        }

    def region(self, text: str) -> Region | None:
        """The region more of the text's evidence names; None (plain t2s) for no evidence or a tie."""
        if not self.has_traditional(text):
            return None
        evidence = self.evidence(text)
        if evidence["hong_kong"] == evidence["taiwan"]:
            return None
        return "hk" if evidence["hong_kong"] > evidence["taiwan"] else "tw"
