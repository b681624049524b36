"""A wiki table as the text a reader takes from it: its caption, then a line per row with the cells between ` | `.

Dropping tables lost what sentences point at ("已公布一批县级文物保护单位：" followed by nothing). A data table's
rows read as lines of text, a cell's few lines (names split by `<br>`) joined by ` / `; a table whose cells hold
many lines each (poems side by side, a layout table) is not a grid a line can show, so each of its cells becomes a
paragraph instead. Navigation boxes, infoboxes and
sidebars are page furniture, not prose, and stay dropped, as do tables nested in a cell.

MediaWiki's table syntax is line-based (`{|` opens, `|+` captions, `|-` starts a row, `!` and `|` start header and
data cells, `!!` and `||` separate cells on one line, a single `|` ends a cell's attributes), so a small scanner
reads it: a full wikitext parser (mwparserfromhell) would parse the whole page to find them, and extraction reads
the rest of a page without one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tinylm.corpus.wiki.templates import outside_nesting

_FURNITURE = re.compile(r"\b(?:navbox|infobox|metadata|sidebar|vertical-navbox|toccolours|ambox|mbox)", re.I)
_TOKENS = re.compile(r"\[\[|\]\]|\{\{|\}\}|\|\||!!|\|")
_ATTRIBUTES = re.compile(r"^\s*(?:[\w:-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s|]+)\s*)*$")
# The line-break mark of `markup.py`, kept where a cell's lines stay lines.
_BREAK = "\x02"
# A cell of a few lines (names split by <br>) joins them with " / " in its row; one of more (a poem) is a layout
# table's, whose cells become paragraphs.
_LINES_IN_A_ROW = 4


def render_table(block: str, expand: Callable[[str], str]) -> str:
    """The text of one table `{| … |}`; `expand` cleans a cell's wikitext (its templates, nested tables dropped)."""
    lines = block.strip().split("\n")
    if _FURNITURE.search(lines[0]):
        return ""
    caption, rows = "", [[]]
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("|}"):
            break
        if stripped.startswith("|+"):
            caption = expand(_content(stripped[2:])).strip()
        elif stripped.startswith("|-"):
            rows.append([])
        elif stripped[:1] in ("|", "!"):
            marker = 2 if stripped[:2] in ("||", "!!") else 1  # `!! Import` on a line of its own continues a row
            rows[-1].extend(_split_cells(stripped[marker:], header=stripped[0] == "!"))
        elif rows[-1]:
            rows[-1][-1] += "\n" + line
    cells = [[_shown(expand(_content(cell))) for cell in row] for row in rows]
    cells = [_without_trailing_empties(row) for row in cells]
    cells = [row for row in cells if row]
    lines = [[[line.strip() for line in re.split(f"[\n{_BREAK}]", cell)] for cell in row] for row in cells]
    if any(sum(map(bool, cell)) > _LINES_IN_A_ROW for row in lines for cell in row):
        shown = [_BREAK.join(cell).strip(_BREAK) for row in lines for cell in row if any(cell)]
        return "\n\n".join(([caption] if caption else []) + shown)
    rows_shown = [" | ".join(" / ".join(filter(None, cell)) for cell in row) for row in lines]
    return "\n".join(([caption] if caption else []) + rows_shown)


def _split_cells(line: str, header: bool) -> list[str]:
    """A row line's cells, split at `||` (and `!!` on a header line) outside links and templates."""
    cells, start = [], 0
    for token in outside_nesting(line, _TOKENS):
        if token.group() == "||" or (header and token.group() == "!!"):
            cells.append(line[start : token.start()])
            start = token.end()
    cells.append(line[start:])
    return cells


def _content(cell: str) -> str:
    """A cell without its attributes (`style="…" | text`): the text after its first bar outside links and templates,
    as MediaWiki reads it, unless a link or template stands before that bar (text, not attributes)."""
    bar = next((token for token in outside_nesting(cell, _TOKENS) if token.group() == "|"), None)
    if bar is None or "[[" in cell[: bar.start()] or "{{" in cell[: bar.start()]:
        return cell
    return cell[bar.end() :]


def _shown(text: str) -> str:
    """A cleaned cell as shown: nothing for one left holding only attributes (`| colspan="5" {{CMain}}`, whose
    template would have closed the attributes), else its text."""
    text = text.strip()
    return "" if "=" in text and _ATTRIBUTES.fullmatch(text) else text


def _without_trailing_empties(row: list[str]) -> list[str]:
    while row and not row[-1]:
        row = row[:-1]
    return row
