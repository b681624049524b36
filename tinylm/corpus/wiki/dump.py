"""Stream pages out of a MediaWiki XML export, in constant memory.

The parser sees one `<page>` at a time and clears it (and the root's reference to it)
once read, so a 90 GB dump needs as little memory as a 9 MB one. The XML declaration's
encoding is honoured by the parser itself.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class WikiPage:
    page_id: int
    title: str
    namespace: int
    redirect: bool
    timestamp: str | None
    text: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text
    return None


def _page_from_element(page: ET.Element) -> WikiPage:
    revision = None
    redirect = False
    for child in page:
        name = _local(child.tag)
        if name == "revision":
            revision = child
        elif name == "redirect":
            redirect = True
    return WikiPage(
        page_id=int(_child_text(page, "id") or 0),
        title=_child_text(page, "title") or "",
        namespace=int(_child_text(page, "ns") or 0),
        redirect=redirect,
        timestamp=_child_text(revision, "timestamp") if revision is not None else None,
        text=(_child_text(revision, "text") if revision is not None else None) or "",
    )


def iter_pages(stream: IO[bytes]) -> Iterator[WikiPage]:
    """Yield every `<page>` of an export read from a binary stream, in file order."""
    root: ET.Element | None = None
    for event, element in ET.iterparse(stream, events=("start", "end")):
        if event == "start":
            if root is None:
                root = element
            continue
        if _local(element.tag) == "page":
            yield _page_from_element(element)
            element.clear()
            if root is not None:
                root.clear()


def site_dbname(stream: IO[bytes]) -> str | None:
    """The `<dbname>` of the export (e.g. `zhwiki`), read from its siteinfo header only."""
    for _, element in ET.iterparse(stream, events=("end",)):
        name = _local(element.tag)
        if name == "dbname":
            return element.text
        if name in ("siteinfo", "page"):
            return None
    return None
