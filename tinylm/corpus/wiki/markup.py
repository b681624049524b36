"""Wikitext to plain text.

MediaWiki markup is not a regular language, so nested constructs (templates, tables,
file links with captions that hold links) are removed by a bracket-matching scanner, which
keeps the visible text of the templates `templates.py` lists as prose; the flat ones that
remain (links, emphasis, headings, tags) go by regular expressions.
The order matters: comments first, then formulas (set aside whole, so TeX's braces and
primes are never read as markup), then refs (they may hide braces), then variant markup,
then nested blocks, then links, then inline markup.

What a reader sees of each construct survives (docs/corpus.md has the table): `<math>` and
`<chem>` keep their TeX between dollar signs, `<br>` and `<poem>` keep their line breaks,
`{{e|9}}` shows ×10^9, a simple table becomes one line per row with its cells between ` | `,
and a heading whose section holds no text (references, an emptied table) is dropped.
"""

from __future__ import annotations

import html
import re
from typing import Literal

from tinylm.corpus.wiki.tables import render_table
from tinylm.corpus.wiki.templates import TemplateTable, template_table

Tables = Literal["keep", "drop"]

VARIANT_FALLBACK = {
    "zh-hans": ("zh-hans", "zh-cn", "zh-sg", "zh-my", "zh"),
    "zh-cn": ("zh-cn", "zh-hans", "zh-sg", "zh"),
    "zh-hant": ("zh-hant", "zh-tw", "zh-hk", "zh-mo", "zh"),
    "zh-tw": ("zh-tw", "zh-hant", "zh-hk", "zh"),
    "zh-hk": ("zh-hk", "zh-hant", "zh-tw", "zh"),
}

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_DROPPED_TAGS = (
    "ref|gallery|timeline|score|syntaxhighlight|source|templatedata|graph|mapframe|hiero|imagemap|references"
)
# A formula's TeX, set aside as a numbered placeholder (private-use characters no wikitext holds) until the end.
_FORMULA = re.compile(r"<(math|chem|ce)\b([^>]*)>(.*?)</\1\s*>", re.I | re.S)
_EMPTY_FORMULA = re.compile(r"<(?:math|chem|ce)\b[^>]*/>", re.I)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
# A line break a reader sees (<br>, a poem's lines), kept through the passes that fold white space.
_BREAK = "\x02"
_BR = re.compile(r"<br\s*/?>|</br>", re.I)
_POEM = re.compile(r"<poem\b[^>]*>(.*?)(?:</poem\s*>|\Z)", re.I | re.S)
_SELF_CLOSING = re.compile(rf"<(?:{_DROPPED_TAGS})\b[^>]*/>", re.I)
_PAIRED = re.compile(rf"<({_DROPPED_TAGS})\b[^>]*>.*?</\1\s*>", re.I | re.S)
_UNCLOSED_REF = re.compile(r"<ref\b[^>]*>", re.I)
_VARIANT = re.compile(r"-\{(.*?)\}-", re.S)
_VARIANT_RULE = re.compile(r"^\s*([a-z]{2,3}(?:-[a-z]+)?)\s*:(.*)$", re.S | re.I)
_VARIANT_FLAGS = re.compile(r"[A-Za-z;\s-]{1,6}")
# zhwiki's whole-page conversion rules: {{noteTA|1=zh-cn:接口; zh-tw:介面;|G1=IT}} (its numbered or unnamed parameters).
_NOTE_TA = re.compile(r"\{\{\s*[Nn]ote\s?TA\s*((?:\|[^{}]*)?)\}\}")
_NUMBERED_PARAMETER = re.compile(r"^\s*(?:\d+\s*=)?(?P<rule>[^=]*(?:=>[^=]*)?)$", re.S)
_NESTED_TOKEN = re.compile(r"\{\{|\}\}|^[ \t:]*\{\||^[ \t]*\|\}|\[\[|\]\]", re.M)
_MEDIA_PREFIXES = (
    "file",
    "image",
    "media",
    "category",
    "文件",
    "檔案",
    "档案",
    "图像",
    "圖像",
    "图片",
    "圖片",
    "分类",
    "分類",
    "Datei",
    "Fichier",
    "Kategorie",
    "Catégorie",
)
_INTERLANGUAGE = re.compile(r"^:?[a-z]{2,3}(?:-[a-z]{2,8})*:", re.I)
_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_BARE_URL_BRACKET = re.compile(r"\[(?:https?:|ftp:)//[^\]]*\]")
_EMPHASIS = re.compile(r"'{2,}")
# Marks a heading's line until empty sections are dropped (a control character wikitext does not hold).
_HEADING_MARK = "\x01"
# Kept templates inside kept templates: real pages nest a few ({{link-en|{{convert|...}}|...}}).
_MAX_KEPT_DEPTH = 16
_HEADING = re.compile(r"^(={1,6})\s*(.*?)\s*\1\s*$", re.M)
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^>]*?/?>")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*", re.M)
# A definition term alone on its line (`;参考引用`), which pages use as a small heading.
_TERM = re.compile(r"^;\s*([^:\n]*?)\s*$", re.M)
_TERM_LEVEL = 7
_HORIZONTAL_RULE = re.compile(r"^-{4,}\s*$", re.M)
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_LEFTOVER_BRACKETS = re.compile(r"\[\[|\]\]|\{\{|\}\}")
# Brackets a dropped template or reference left with nothing inside: `董萍（），又名`, `born () in`, `（，）`.
# ASCII ones right after a name stay: `main()` in an article on C is a call, not residue.
_EMPTY_BRACKETS = re.compile(r"\s?(?:（[\s,，;；、:：]*）|(?<![A-Za-z0-9_])\([\s,，;；、:：]*\))")


def resolve_variants(text: str, variant: str = "zh-hans") -> str:
    """Resolve `-{...}-` language-variant markup to one variant.

    Handles `-{zh-hans:A;zh-hant:B}-` (picking by the fallback chain of `variant`),
    `-{text}-` (no conversion: the text itself), and flag forms such as `-{H|...}-`
    or `-{A|...}-` (rules for the whole page: the visible part is kept, rules are dropped).
    """
    chain = VARIANT_FALLBACK.get(variant, (variant, "zh"))

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        flags, bar, rest = body.partition("|")
        if bar and _VARIANT_FLAGS.fullmatch(flags):
            if "H" in flags or "-" in flags:
                return ""
            body = rest
        rules = {}
        for part in body.split(";"):
            rule = _VARIANT_RULE.match(part)
            if rule:
                rules[rule.group(1).lower()] = rule.group(2)
        if not rules:
            return body
        for code in chain:
            if code in rules:
                return rules[code].strip()
        return next(iter(rules.values())).strip()

    return _VARIANT.sub(replace, text)


def _variant_forms(rule: str) -> dict[str, str]:
    """`zh-cn:接口; zh-tw:介面` as {variant code: form}; parts that name no variant are ignored."""
    forms = {}
    for part in rule.split(";"):
        match = _VARIANT_RULE.match(part)
        if match and match.group(2).strip():
            forms[match.group(1).lower()] = match.group(2).strip()
    return forms


def _shown_form(forms: dict[str, str], chain: tuple[str, ...]) -> str | None:
    return next((forms[code] for code in chain if code in forms), None)


def page_conversion_rules(markup: str, variant: str = "zh-hans") -> dict[str, str]:
    """The word rules a zhwiki page declares for all of its text, as {what other variants write: what `variant`
    shows}: `{{noteTA|1=zh-cn:接口; zh-tw:介面;}}`, `-{H|…}-` and `-{A|…}-`, one-way `-{H|介面=>zh-cn:接口}-` too.

    MediaWiki applies them wherever the page is rendered for a variant; t2s cannot, as it converts characters, and
    介面 or 類別 are word choices (t2s writes 介面 and 类别 where mainland readers see 接口 and 类). A rule with no form
    in `variant`'s fallback chain converts nothing, as on the site; conversion groups (`G1=IT`) are site data a
    dump does not carry, and are not applied.
    """
    chain = VARIANT_FALLBACK.get(variant, (variant, "zh"))
    rules: list[str] = []
    for note in _NOTE_TA.finditer(markup):
        for parameter in note.group(1).split("|")[1:]:
            numbered = _NUMBERED_PARAMETER.match(parameter)
            if numbered and ":" in numbered.group("rule"):
                rules.append(numbered.group("rule"))
    for inline in _VARIANT.finditer(markup):
        flags, bar, rest = inline.group(1).partition("|")
        if bar and _VARIANT_FLAGS.fullmatch(flags) and ("H" in flags or "A" in flags):
            rules.append(rest)
    conversions: dict[str, str] = {}
    for rule in rules:
        both_ways = []
        for part in rule.split(";"):
            source, arrow, target = part.partition("=>")
            if not arrow:
                both_ways.append(part)
            elif (shown := _shown_form(_variant_forms(target), chain)) and source.strip():
                conversions[source.strip()] = shown
        forms = _variant_forms(";".join(both_ways))
        if shown := _shown_form(forms, chain):
            conversions.update((form, shown) for form in forms.values() if form != shown)
    return conversions


def apply_conversions(text: str, conversions: dict[str, str]) -> str:
    """Replace every form `conversions` names in one pass, longest first, so a rule's output is never rewritten."""
    if not conversions:
        return text
    forms = re.compile("|".join(re.escape(form) for form in sorted(conversions, key=len, reverse=True)))
    return forms.sub(lambda match: conversions[match.group()], text)


def _is_media_or_meta_link(inner: str) -> bool:
    prefix, colon, _ = inner.lstrip(":").partition(":")
    if not colon:
        return False
    if prefix.strip().lower() in {p.lower() for p in _MEDIA_PREFIXES} and not inner.startswith(":"):
        return True
    return bool(_INTERLANGUAGE.match(inner)) and not inner.startswith(":")


def remove_nested_blocks(
    text: str, templates: TemplateTable | None = None, nesting: int = 0, tables: Tables = "drop"
) -> str:
    """Remove templates `{{...}}`, tables `{|...|}` and file/category links, however nested; with `tables="keep"`,
    a top-level table shows its rows (`tables.py`), and tables inside it are dropped.

    A template the table lists as prose is replaced by the text it shows (its arguments
    cleaned the same way, so templates inside it are kept or dropped by the same rules);
    past `_MAX_KEPT_DEPTH` kept templates inside one another, the innermost are dropped, so
    a vandalised page cannot exhaust the stack.
    Plain `[[links]]` are left for the flat link pass; a file link's caption (which may
    itself hold links) is dropped with the file. An opener that is never closed loses
    only the rest of its line, so a single malformed template cannot swallow an article.
    """
    templates = templates or template_table()
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    kept_until = 0
    for token in _NESTED_TOKEN.finditer(text):
        kind = token.group().strip(" \t:")
        start, end = token.span()
        if kind in ("{{", "{|"):
            if not stack:
                out.append(text[kept_until:start])
            stack.append((kind, start))
        elif kind == "[[":
            if stack:
                stack.append((kind, start))
            elif _is_media_or_meta_link(text[end : end + 64]):
                out.append(text[kept_until:start])
                stack.append(("[[drop", start))
        elif stack:
            expected = {"}}": ("{{",), "|}": ("{|",), "]]": ("[[", "[[drop")}[kind]
            depth = len(stack) - 1
            while depth >= 0 and stack[depth][0] not in expected:
                depth -= 1
            if depth < 0:
                continue
            opener, opened_at = stack[depth]
            del stack[depth:]
            if not stack:
                if nesting < _MAX_KEPT_DEPTH and opener in ("{{", "{|"):
                    inner = lambda argument: remove_nested_blocks(argument, templates, nesting + 1)  # noqa: E731
                    if opener == "{{":
                        out.append(templates.render(text[opened_at:end], inner))
                    elif tables == "keep":
                        out.append(render_table(text[opened_at:end], inner))
                kept_until = end
    if stack:
        _, start = stack[0]
        line_end = text.find("\n", start)
        kept_until = len(text) if line_end < 0 else line_end
    out.append(text[kept_until:])
    return "".join(out)


def _link_text(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if label is not None:
        return label
    target = target.lstrip(":")
    return target.split("#", 1)[0] if not target.startswith("#") else target[1:]


def _set_aside_formulas(text: str) -> tuple[str, list[str]]:
    """Each `<math>`/`<chem>` replaced by a placeholder, and the text it will show: its TeX between `$` (`$$` for a
    displayed formula), as web-scale corpora keep formulas; chemistry as mhchem's `\\ce{…}`, which is how MediaWiki
    renders `<chem>`. A sentence that quoted a formula keeps it instead of a hole."""
    formulas: list[str] = []

    def aside(match: re.Match[str]) -> str:
        tag, attributes, tex = match.group(1).lower(), match.group(2), " ".join(html.unescape(match.group(3)).split())
        if not tex:
            return ""
        if tag != "math":
            tex = f"\\ce{{{tex}}}"
        dollars = "$$" if re.search(r"display\s*=\s*[\"']?block", attributes, re.I) else "$"
        formulas.append(f"{dollars}{tex}{dollars}")
        return f"\ue000{len(formulas) - 1}\ue001"

    return _FORMULA.sub(aside, _EMPTY_FORMULA.sub("", text)), formulas


_WRITTEN_FORMULA = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)


def outside_formulas(text: str) -> str:
    """Extracted text less the formulas it shows (`$…$`, `$$…$$`), whose TeX holds braces and bars that read as wiki
    markup: what a check for markup residue looks at."""
    return _WRITTEN_FORMULA.sub(" ", text)


def _keep_line_breaks(text: str) -> str:
    """`<br>` and a poem's line ends as break marks, which survive the passes that fold lines and spaces."""

    def poem(match: re.Match[str]) -> str:
        return _BREAK.join(line.lstrip(":") for line in match.group(1).strip("\n").split("\n"))

    text = _POEM.sub(poem, text)
    return _BR.sub(_BREAK, text)


def wikitext_to_text(
    markup: str,
    *,
    variant: str = "zh-hans",
    keep_headings: bool = True,
    templates: TemplateTable | None = None,
    tables: Tables = "keep",
) -> str:
    """Plain visible text of a page's wikitext, paragraphs separated by one blank line (`templates`: the built-in table
    if None; `tables`: simple tables as a line per row, or dropped)."""
    text = _COMMENT.sub("", markup)
    text, formulas = _set_aside_formulas(text)
    text = _SELF_CLOSING.sub("", text)
    text = _PAIRED.sub("", text)
    text = _UNCLOSED_REF.sub("", text)
    conversions = page_conversion_rules(text, variant)
    text = resolve_variants(text, variant)
    text = _keep_line_breaks(text)
    text = remove_nested_blocks(text, templates, tables=tables)
    text = _LINK.sub(_link_text, text)
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = _BARE_URL_BRACKET.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = _HEADING.sub(
        (lambda m: f"\n{_HEADING_MARK}{len(m.group(1))}{_HEADING_MARK}{m.group(2)}\n") if keep_headings else "", text
    )
    term = f"{_HEADING_MARK}{_TERM_LEVEL}{_HEADING_MARK}"
    text = _TERM.sub((lambda m: f"{term}{m.group(1)}") if keep_headings else "", text)
    text = _MAGIC_WORD.sub("", text)
    text = _TAG.sub("", text)
    text = apply_conversions(text, conversions)
    text = _LIST_MARKER.sub("", text)
    text = _HORIZONTAL_RULE.sub("", text)
    text = html.unescape(text)
    text = _LEFTOVER_BRACKETS.sub("", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _PLACEHOLDER.sub(lambda match: formulas[int(match.group(1))], text).replace(_BREAK, "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(_without_empty_sections(lines))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _heading(line: str) -> tuple[int, str] | None:
    """(level, title) of a line the heading rule marked, or None for text."""
    if not line.startswith(_HEADING_MARK):
        return None
    level, _, title = line[1:].partition(_HEADING_MARK)
    return int(level), title.strip()


def _without_empty_sections(lines: list[str]) -> list[str]:
    """Headings as plain lines, less those whose section holds no text: a section that was only a gallery or
    references, removed above, would leave its heading standing alone. A definition term alone on its line
    (`;参考引用`) counts as a heading below all others, so reference sections titled that way go too."""
    kept = []
    for index, line in enumerate(lines):
        heading = _heading(line)
        if heading is None:
            kept.append(line)
        elif heading[1] and _section_has_text(lines[index + 1 :], heading[0]):
            kept.append(heading[1])
    return kept


def _section_has_text(following: list[str], level: int) -> bool:
    """Whether any text comes before the next heading of the same or a higher level (a subsection's text counts)."""
    for line in following:
        heading = _heading(line)
        if heading is not None and heading[0] <= level:
            return False
        if heading is None and line:
            return True
    return False
