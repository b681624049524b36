"""Readers, one per input format, over a shared base and compressed streams: raw files to Documents.

`read_documents` picks the reader by the file's name (its compression suffix aside);
every reader but parquet's reads the decompressed stream `base.opened` gives it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tinylm.config import ExtractConfig
from tinylm.corpus.compression import plain_name
from tinylm.corpus.readers.base import Reader, opened
from tinylm.corpus.readers.jsonl import read_jsonl
from tinylm.corpus.readers.parquet import read_parquet
from tinylm.corpus.readers.text import read_text
from tinylm.corpus.readers.wikipedia import read_wiki
from tinylm.corpus.readers.wudao import read_wudao
from tinylm.corpus.wiki.multistream import ByteRange
from tinylm.stats import Stats
from tinylm.storage.documents import Document

_FORMATS = ((".xml", "wiki"), (".jsonl", "jsonl"), (".json", "wudao"), (".txt", "text"), (".parquet", "parquet"))
_STREAM_READERS: dict[str, Reader] = {"text": read_text, "jsonl": read_jsonl, "wudao": read_wudao, "wiki": read_wiki}


def input_format(path: str | os.PathLike[str]) -> str:
    name = plain_name(path).lower()
    for suffix, kind in _FORMATS:
        if name.endswith(suffix):
            return kind
    raise ValueError(
        f"{path}: unknown corpus format (expected .xml, .jsonl, .json (WuDao), .txt or .parquet, "
        "optionally compressed as .bz2, .gz or .zst)"
    )


def read_documents(
    path: str | os.PathLike[str],
    config: ExtractConfig,
    stats: Stats,
    byte_range: ByteRange | None = None,
    root_tag: bytes | None = None,
) -> Iterator[Document]:
    """Yield the documents of one raw file, or of one byte range of a multistream dump."""
    path = Path(path)
    kind = input_format(path)
    if kind == "parquet":
        yield from read_parquet(path, config, stats)
        return
    with opened(path, stats, byte_range, root_tag) as stream:
        yield from _STREAM_READERS[kind](path, stream, config, stats)
