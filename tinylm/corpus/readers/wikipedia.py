"""Wikipedia `pages-articles` dumps: articles (by namespace) to plain text, redirects and disambiguation skipped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tinylm.config import ExtractConfig
from tinylm.corpus.compression import CountingReader, decompressed, plain_name
from tinylm.corpus.wiki.dump import iter_pages, site_dbname
from tinylm.corpus.wiki.markup import wikitext_to_text
from tinylm.corpus.wiki.templates import template_table
from tinylm.stats import Stats
from tinylm.storage.documents import Document, make_document

_DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:disambiguation|disambig|dab|hndis|geodis|消歧义|消歧義|disambig-cleanup)\s*[|}]",
    re.I,
)
_DISAMBIGUATION_TITLE = re.compile(r"\((?:disambiguation|消歧义|消歧義)\)$", re.I)
# A redirect written only in the text, as small and old dumps have it (no <redirect> element): MediaWiki's magic word
# in English and in zhwiki's own spellings.
_TEXT_REDIRECT = re.compile(r"^\s*#\s*(?:redirect|重定向|重新导向|重新導向)\s*:?\s*\[\[", re.I)


def is_disambiguation(title: str, markup: str) -> bool:
    return bool(_DISAMBIGUATION_TITLE.search(title) or _DISAMBIGUATION.search(markup))


def site_of(path: Path) -> str:
    """The wiki's database name (`enwiki`, `zhwiki`) from the dump's siteinfo, else from the file name."""
    with decompressed(path, CountingReader(open(path, "rb")), read_ahead=False) as header:
        return site_dbname(header) or plain_name(path).split("-")[0]


def read_wiki(path: Path, stream: IO[bytes], config: ExtractConfig, stats: Stats) -> Iterator[Document]:
    source = site_of(path)
    language = source.removesuffix("wiki").replace("_", "-")
    templates = template_table(config.templates, config.template_aliases)
    for page in iter_pages(stream):
        stats.update("records")
        if page.namespace not in config.namespaces:
            stats.skip("other_namespace")
            continue
        if page.redirect or _TEXT_REDIRECT.match(page.text):
            stats.skip("redirect")
            continue
        if config.skip_disambiguation and is_disambiguation(page.title, page.text):
            stats.skip("disambiguation")
            continue
        text = wikitext_to_text(
            page.text,
            variant=config.variant,
            keep_headings=config.keep_headings,
            templates=templates,
            tables=config.tables,
        )
        if not text:
            stats.skip("empty")
            continue
        stats.update("documents")
        yield make_document(
            source,
            page.page_id,
            text,
            title=page.title,
            url=f"https://{language}.wikipedia.org/wiki?curid={page.page_id}",
            meta=json.dumps({"page_id": page.page_id, "timestamp": page.timestamp}),
        )
