import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.helpers import write_wiki_dump
from tinylm.config import ExtractConfig
from tinylm.corpus.readers import read_documents
from tinylm.corpus.wiki.markup import (
    outside_formulas,
    page_conversion_rules,
    remove_nested_blocks,
    resolve_variants,
    wikitext_to_text,
)
from tinylm.stats import Stats


def test_nested_multiline_templates_are_removed_whole():
    markup = "Before {{Infobox person\n| name = {{lang|de|Karl}}\n| born = {{birth date|1818|5|5}}\n}} after."
    assert wikitext_to_text(markup) == "Before after."


def test_refs_comments_and_gallery_are_dropped_and_a_formula_keeps_its_tex():
    markup = (
        "Text<ref name=a>{{cite web|url=http://x}}</ref> more<ref name=a/>.<!-- hidden -->"
        " Formula <math>x^2</math> end.\n<gallery>\nFile:A.jpg|cap\n</gallery>"
    )
    assert wikitext_to_text(markup) == "Text more. Formula $x^2$ end."


def test_a_table_keeps_a_line_per_row_or_is_dropped_when_asked():
    markup = "Intro.\n{| class=wikitable\n|-\n| a || {{flag|x}}\n|-\n| b\n|}\nOutro."
    assert wikitext_to_text(markup) == "Intro.\na | x\nb\nOutro."
    assert wikitext_to_text(markup, tables="drop") == "Intro.\n\nOutro."


def test_file_links_with_nested_links_in_caption_are_dropped():
    markup = "A [[File:Map.png|thumb|A map of [[France]] and [[Spain|Spanish]] land]] B"
    assert wikitext_to_text(markup) == "A B"


def test_links_keep_their_visible_text():
    markup = (
        "[[Paris]] is in [[France|the French Republic]]; [[dog]]s bark. See [https://example.org the site] "
        "[https://x.org]."
    )
    assert wikitext_to_text(markup) == "Paris is in the French Republic; dogs bark. See the site ."


def test_categories_and_interlanguage_links_are_dropped():
    markup = "Body text.\n[[Category:Philosophy]]\n[[de:Anarchismus]]\n[[zh-yue:無政府主義]]"
    assert wikitext_to_text(markup) == "Body text."


def test_headings_emphasis_entities_and_magic_words():
    markup = (
        "__NOTOC__\n== History ==\n'''Bold''' and ''italic'' &amp; &nbsp;spaced&mdash;done.\n* item one\n# item two"
    )
    assert wikitext_to_text(markup) == "History\n\nBold and italic & spaced—done.\nitem one\nitem two"
    assert wikitext_to_text(markup, keep_headings=False) == "Bold and italic & spaced—done.\nitem one\nitem two"


def test_unclosed_template_loses_only_its_line():
    assert wikitext_to_text("Kept line.\n{{broken template\nNext line.") == "Kept line.\n\nNext line."


def test_stray_closers_are_ignored():
    assert remove_nested_blocks("a }} b ]] c") == "a }} b ]] c"


def test_variant_markup_resolves_to_the_chosen_variant():
    assert resolve_variants("-{zh-hans:计算机;zh-hant:電腦;}-") == "计算机"
    assert resolve_variants("-{zh-hans:计算机;zh-hant:電腦;}-", "zh-hant") == "電腦"
    assert resolve_variants("-{zh-cn:软件;zh-tw:軟體;}-") == "软件"
    assert resolve_variants("-{zh:通用;zh-tw:臺灣;}-") == "通用"
    assert resolve_variants("名字-{巴黎}-不变") == "名字巴黎不变"
    assert resolve_variants("-{H|zh-hans:内存;zh-hant:記憶體;}-文字") == "文字"


def test_chinese_page_with_variants_templates_tables_and_refs():
    markup = """{{Infobox 城市
|名称 = 台北
|人口 = {{formatnum:2600000}}
}}
'''臺北市'''是-{zh-hans:中华民国;zh-hant:中華民國;}-的[[首都]]<ref>{{cite web|title=x}}</ref>，位於[[臺灣|台湾]]北部。

== 歷史 ==
{| class="wikitable"
! 年份 !! 事件
|-
| 1884 || 建城
|}
[[File:Taipei.jpg|thumb|[[台北101]]夜景]]
清朝時期-{建城}-於1884年。<!-- 註解 -->
[[Category:台灣城市]]
[[en:Taipei]]"""
    expected = "臺北市是中华民国的首都，位於台湾北部。\n\n歷史\n\n年份 | 事件\n1884 | 建城\n\n清朝時期建城於1884年。"
    assert wikitext_to_text(markup) == expected


def test_a_heading_whose_section_held_only_removed_markup_is_dropped():
    markup = (
        "Intro text.\n== History ==\n=== Early years ===\nThey met in 1901.\n=== Gallery "
        "===\n<gallery>\nA.jpg\n</gallery>\n"
        "== References ==\n{{Reflist}}\n== See also ==\n* [[Anarchism]]\n== External links ==\n{{Commons category}}\n"
    )
    assert (
        wikitext_to_text(markup)
        == "Intro text.\n\nHistory\n\nEarly years\n\nThey met in 1901.\n\nSee also\n\nAnarchism"
    )


def test_real_articles_no_longer_end_in_a_bare_references_heading(enwiki_dump):
    endings = [document["text"].splitlines()[-1] for document in read_documents(enwiki_dump, ExtractConfig(), Stats())]
    # (A definition-list term such as ";Notes" is text, not a heading: it may still end an article.)
    bare = [line for line in endings if line in ("References", "External links", "Further reading", "Bibliography")]
    assert bare == [], "17 of the 98 sample articles ended in a heading whose section was only templates"


ZHWIKI_PAGES = Path(__file__).parent / "data" / "zhwiki" / "zhwiki-template-pages.xml.bz2"
BIOGRAPHIES = Path(__file__).parent / "data" / "zhwiki" / "biographies"
MARKUP = ("{{", "}}", "[[", "]]", "{|", "|}", "-{", "}-", "'''", "<ref", "</")


def test_real_zhwiki_pages_keep_the_prose_inside_link_language_and_date_templates():
    texts = {document["title"]: document["text"] for document in read_documents(ZHWIKI_PAGES, ExtractConfig(), Stats())}
    quic, yui, circles = texts["快速UDP网络连接"], texts["雅虎UI库"], texts["等M圓及等N圓"]
    assert "QUIC的网络草案被正式提交" in quic  # {{link-en|网络草案|Internet Draft}}
    assert "（Quick UDP Internet Connections，缩写：QUIC）" in quic  # {{lang-en|'''Q'''uick ...}}
    assert "大大减少开销。" in quic and "HTTP (HTTP over QUIC) 重命名" in quic  # {{Link-en|...}}, {{Lang-en|...}}
    assert "數據傳輸層加密" in quic  # {{tsl|en|Datagram Transport Layer Security|數據傳輸層加密}}
    assert "（Yahoo! UI Library，YUI）" in yui and "於2014-08-29，" in yui  # {{lang-en|...}}, {{date|...|iso}}
    assert "軌跡為阿波羅尼斯圓，" in circles
    assert not [marker for text in texts.values() for marker in MARKUP if marker in outside_formulas(text)]
    assert (
        "Daniel Stenberg: HTTP/3 explained" in quic and "2013-12-20" not in yui
    )  # kept in a list; dropped with the infobox


def test_templates_show_their_arguments_by_the_table():
    markup = (
        "{{convert|50|ft|m}}, {{convert|1|to|2|km|abbr=on}}; born {{birth date|df=y|1818|5|5}} in "
        "{{nihongo|Tokyo|東京|Tōkyō}};"
        " {{ill|Karl|de|Karl F.|lt=K.}} {{Interlanguage link|Karl|de|Karl F.}}; H{{sub|2}}O {{quote|text=To be}} "
        "{{lang|de|Karl}}"
    )
    expected = "50 ft, 1 to 2 km; born 1818-5-5 in Tokyo (東京, Tōkyō); K. Karl; H2O To be Karl"
    assert wikitext_to_text(markup) == expected


def test_templates_inside_kept_templates_follow_the_same_rules():
    markup = (
        "{{link-en|{{convert|198|cuin|L|abbr=on}} ''Slant-6''{{efn|note}}|Chrysler Slant 6 engine#198}} and "
        "{{lang-en|[[Paris|the city]]}}"
    )
    assert wikitext_to_text(markup) == "198 cuin Slant-6 and the city"


def test_a_kept_template_without_the_arguments_it_shows_is_dropped():
    assert wikitext_to_text("A{{lang-en}}{{lang-en|}}{{lang|de}}{{zh}}B {{cite web|title={{lang-en|x}}}}C") == "AB C"


def test_a_run_adds_templates_and_aliases_to_the_table(tmp_path):
    markup = "{{Infobox|x=1}}作者{{僅限中文|名|Name}}生于{{出生日期|1900|1|2}}。"
    assert wikitext_to_text(markup) == "作者生于。"
    config = ExtractConfig(
        templates={"僅限中文": "{1}（{2}）", "convert": [{"show": "{1}", "when": {"2": ["km"]}}]},
        template_aliases={"出生日期": "birth date"},
    )
    dump = write_wiki_dump(
        tmp_path / "zhwiki-test-pages-articles.xml.bz2", {"例子": markup + "{{convert|5|km}}{{convert|5|mi}}"}
    )
    [document] = read_documents(dump, config, Stats())
    assert document["text"] == "作者名（Name）生于1900-1-2。5"


def test_a_wrong_template_rule_is_a_config_error():
    with pytest.raises(ValidationError, match="templates"):
        ExtractConfig(templates={"lang": 3})


def test_kept_templates_nested_past_any_real_page_are_dropped_not_a_crash():
    deep = "{{nowrap|" + "{{small|" * 300 + "x" + "}}" * 300 + "}}"
    assert wikitext_to_text(f"Before {deep} after {{{{small|{{{{nowrap|kept}}}}}}}}.") == "Before after kept."


def test_birth_death_templates_show_their_dates_as_zhwiki_does(tmp_path):
    """Real zhwiki biographies (tests/data/zhwiki/biographies): the dates the {{bd}} template shows, where the
    brackets used to hold nothing (`徐才厚（），辽宁…`)."""
    pages = {path.stem: path.read_text(encoding="utf-8") for path in BIOGRAPHIES.glob("*.wiki")}
    dump = write_wiki_dump(tmp_path / "zhwiki-bio-pages-articles.xml.bz2", pages)
    texts = {document["title"]: document["text"] for document in read_documents(dump, ExtractConfig(), Stats())}
    assert texts["徐才厚"].startswith("徐才厚（1943年6月－2015年3月15日），辽宁瓦房店人，")
    assert texts["高本詞史"].startswith("高本詞史（1967年12月31日），前日本足球運動員。"), "a birth alone shows no dash"
    assert texts["亨利·基辛格"].endswith("（Heinz Alfred Kissinger），1923年5月27日）")
    assert wikitext_to_text("{{bd|5世紀||？||}}") == "5世紀－？"


def test_brackets_left_empty_by_dropped_templates_are_removed_from_real_articles(enwiki_dump):
    """The enwiki sample held 18 of them (`Albedo () or reflection`, `ASCII ( ), abbreviated`)."""
    texts = {document["title"]: document["text"] for document in read_documents(enwiki_dump, ExtractConfig(), Stats())}
    assert not [title for title, text in texts.items() if re.search(r"\(\s*[,;]*\s*\)", text)]
    assert "Albedo or reflection coefficient" in texts["Albedo"]
    assert wikitext_to_text("董萍（{{lang-en|}}），又名{{efn|x}}（，）<code>main()</code>") == "董萍，又名main()"


def test_chinese_range_words_in_convert_keep_both_values_and_the_unit():
    assert wikitext_to_text("{{convert|24|至|43|mm}}，{{convert|3|到|5|km}}，{{convert|1|－|2|m}}") == (
        "24至43 mm，3到5 km，1－2 m"
    )


VARIANT_PAGES = Path(__file__).parent / "data" / "zhwiki" / "variants"


def variant_pages(tmp_path: Path) -> dict[str, str]:
    pages = {path.stem: path.read_text(encoding="utf-8") for path in VARIANT_PAGES.glob("*.wiki")}
    dump = write_wiki_dump(tmp_path / "zhwiki-variants-pages-articles.xml.bz2", pages)
    return {document["title"]: document["text"] for document in read_documents(dump, ExtractConfig(), Stats())}


def test_a_pages_note_ta_rules_convert_its_words_as_the_site_shows_them(tmp_path):
    """Real zhwiki articles written in Taiwan's words (tests/data/zhwiki/variants): their {{noteTA}} rules
    (`zh-cn:接口; zh-tw:介面;`) apply to the whole text, as the site renders it for a simplified reader."""
    texts = variant_pages(tmp_path)
    java = texts["介面 (Java)"]
    assert java.startswith("接口（Interface），在Java程式語言中是一個抽象型別") and "介面" not in java
    assert "一個實作接口的类，必須實作" in java and "類別" not in java
    face = texts["面容ID"]
    assert face.startswith("Face ID（Face ID）是蘋果公司"), "zh-hans shows Face ID where zh-cn shows 面容ID"
    assert "臉部识别系统" in face and "识别臉部" in face, "a rule with no zh-hans form converts nothing"
    assert "苹果数字媒体商店" in face  # -{zh-cn:数字;zh-tw:數位;}- inline


def test_reference_sections_left_empty_in_real_zhwiki_articles_lose_their_headings(tmp_path):
    texts = variant_pages(tmp_path)
    assert texts["介面 (Java)"].endswith(
        "外部連結\n\nSkeletal Implementations in Java Explained\nWhat Is an Interface?\n"
        "Difference between a Java interface and a Java abstract class"
    )
    assert "參考文獻" not in texts["介面 (Java)"] and "参考资料" not in texts["面容ID"]
    nested = (
        "正文。\n== 参考文献 ==\n=== 脚注 ===\n{{reflist|group=注}}\n=== 引用 ===\n<references/>\n"
        "== 外部链接 ==\n* 官网"
    )
    assert wikitext_to_text(nested) == "正文。\n\n外部链接\n\n官网"


def test_one_way_unnamed_and_removed_rules_and_what_is_not_a_rule():
    rules = page_conversion_rules(
        "{{NoteTA|zh-cn:鼠标; zh-tw:滑鼠;}}-{H|記憶體=>zh-cn:内存;}-{{noteTA|G1=IT|T=zh-cn:标题;zh-tw:標題}}", "zh-cn"
    )
    assert rules == {"滑鼠": "鼠标", "記憶體": "内存"}, "G1 (a site group) and T (the title) are not text rules"
    assert wikitext_to_text("A-{-|zh-cn:鼠标; zh-tw:滑鼠;}-B") == "AB", "the - flag removes a rule and shows nothing"
    assert wikitext_to_text("{{NoteTA|1=zh-cn:鼠标; zh-tw:滑鼠;}}按滑鼠，滑鼠墊", variant="zh-tw") == "按滑鼠，滑鼠墊"


def test_what_readers_see_of_formulas_powers_of_ten_poems_and_tables_survives_on_real_pages(enwiki_dump):
    """Each construct on a real page, against what the rendered page shows: a dropped {{e}} or {{val|e=}} made a
    number wrong by its power of ten, a dropped <math> left sentences with holes, a dropped <br>/<poem> ran a poem's
    lines together, and a dropped table left the sentence introducing it pointing at nothing."""
    english = {
        document["title"]: document["text"] for document in read_documents(enwiki_dump, ExtractConfig(), Stats())
    }
    assert "roughly 6.241×10^18 times the elementary charge" in english["Ampere"]  # {{val|6.241|e=18}}
    assert "O beautiful for spacious skies,\nFor amber waves of grain,\n" in english["America the Beautiful"]
    assert (
        "skies,\nFor amber waves of grain,\nFor purple mountain majesties\nAbove the enameled plain!"
        in (english["America the Beautiful"])
    ), "a <poem> in a table cell keeps its lines"
    alaska = english["Alaska"]
    assert (
        "in Alaska\nLocation | July (°F) | July (°C) | January (°F) | January (°C)\nAnchorage | 65/51 | 18/10" in alaska
    )
    assert "Albedo" in english and "$A =\\left ( \\frac{1329\\times10^{-H/5}}{D} \\right ) ^2$" in english["Albedo"]
    chinese = {
        document["title"]: document["text"] for document in read_documents(ZHWIKI_PAGES, ExtractConfig(), Stats())
    }
    assert "其閉迴路傳遞函數為$T(s) = \\frac{G(s)}{1+G(s)}$。" in chinese["等M圓及等N圓"]
    dropped = {d["title"]: d["text"] for d in read_documents(enwiki_dump, ExtractConfig(tables="drop"), Stats())}
    assert "Anchorage | 65/51" not in dropped["Alaska"]


def test_powers_of_ten_formulas_and_line_breaks_render_as_the_page_shows():
    assert wikitext_to_text("1 C ≈ 2.99792{{e|9}} statC") == "1 C ≈ 2.99792×10^9 statC"
    assert wikitext_to_text("about 3.3{{e|-20}}&nbsp;g") == "about 3.3×10^-20 g"
    assert wikitext_to_text("{{val|1.602|e=-19|u=C}}") == "1.602×10^-19 C"
    assert (
        wikitext_to_text(
            "其中，<math>F = k_e \\frac{q_1 q_2}{r^2}</math>，<math>r</math>是它们之间的距离。<chem>H2O</chem>"
        )
        == "其中，$F = k_e \\frac{q_1 q_2}{r^2}$，$r$是它们之间的距离。$\\ce{H2O}$"
    )
    assert wikitext_to_text("A<math>{{a}}|b</math>'' ''B") == "A${{a}}|b$ B", "TeX is never read as markup"
    assert (
        wikitext_to_text("床前明月光，<br>疑是地上霜。<br />举头望明月，") == "床前明月光，\n疑是地上霜。\n举头望明月，"
    )
    assert wikitext_to_text("<poem>\n:春眠不觉晓，\n处处闻啼鸟。\n</poem>") == "春眠不觉晓，\n处处闻啼鸟。"


def test_a_table_shows_its_caption_and_rows_and_furniture_stays_dropped():
    markup = (
        "已公布一批县级文物保护单位：\n"
        '{| class="wikitable"\n|+ 县级文物保护单位\n! 批次 !! scope="col" | 公布时间\n|-\n'
        '| 第一批 || 1991年3月\n|-\n| style="color:red" | 第二批 || [[1998年|1998年]]<ref>x</ref>\n|}\n'
        '{| class="navbox"\n| [[A]] || [[B]]\n|}\n后文。'
    )
    assert wikitext_to_text(markup) == (
        "已公布一批县级文物保护单位：\n县级文物保护单位\n批次 | 公布时间\n第一批 | 1991年3月\n第二批 | 1998年\n\n后文。"
    )


def test_reference_sections_titled_by_definition_terms_leave_no_heading():
    """zhwiki articles end in reference sections whose subtitles are `;` terms; emptied, none of them stays."""
    markup = (
        "正文。\n\n== 脚注 ==\n{{Reflist|group=注}}\n== 参考文献 ==\n=== 文献 ===\n;参考引用\n{{Reflist|2}}\n"
        ";引用\n<references/>\n== 外部链接 ==\n* [https://example.org 官方网站]\n"
    )
    assert wikitext_to_text(markup) == "正文。\n\n外部链接\n\n官方网站"
    assert wikitext_to_text(";术语\n定义的文字。") == "术语\n定义的文字。", "a term with its text is kept"


def test_a_redirect_written_only_in_the_text_is_skipped_and_counted(tmp_path):
    dump = write_wiki_dump(
        tmp_path / "zhwiki-test-pages-articles.xml.bz2",
        {"X": "#REDIRECT [[Y]]", "旧名": "#重定向 [[新名]]", "新名": "正文足够长的一段文字。"},
    )
    stats = Stats()
    documents = list(read_documents(dump, ExtractConfig(), stats))
    assert [document["title"] for document in documents] == ["新名"]
    assert stats.group("skipped") == {"redirect": 2}


def test_real_tables_read_as_the_page_shows_them(table_dump):
    """Pages heavy in tables, read beside their wikitext: a header row continued on its own line (`!! Import`),
    flags and IPA in cells, cells whose attributes a template closes (`| colspan="5" {{CMain}}`)."""
    texts = {document["title"]: document["text"] for document in read_documents(table_dump, ExtractConfig(), Stats())}
    assert "Trade\n\nCountry | Export | Import\nFinland | 16% | 14%\nSweden | 19% | 8%" in texts["Economy of Estonia"]
    brahui = texts["Brahui language"]
    assert "the voiceless lateral fricative [ɬ], a sound" in brahui
    assert "\nStop | p | b | t | d | | ʈ | ɖ | t͡ʃ | d͡ʒ | k | ɡ | ʔ\n" in brahui
    assert "\nDominic Purcell | Lincoln Burrows\n" in texts["List of Prison Break characters"]
    # A cell's few lines (<br>) stay in its row; the list of winners is rows, not a paragraph a name.
    awards = texts["Academy Award for Best Production Design"]
    assert "\nMost Nominations / (without ever winning) | Roland Anderson | 15 nominations | " in awards
    residue = [title for title, text in texts.items() if re.search(r"(?:colspan|rowspan|style|align)\s*=", text)]
    assert residue == []
