"""Plain text: one document per blank-line-separated paragraph, or per line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tinylm.config import ExtractConfig
from tinylm.corpus.readers.base import decoded_lines, source_name
from tinylm.stats import Stats
from tinylm.storage.documents import Document, make_document


def read_text(path: Path, stream: IO[bytes], config: ExtractConfig, stats: Stats) -> Iterator[Document]:
    source = source_name(path)
    block: list[str] = []

    def emit(text: str) -> Document:
        stats.update("records")
        stats.update("documents")
        return make_document(source, stats["records"], text.strip(), url=f"file://{path.name}#{stats['records']}")

    for _, line in decoded_lines(stream, stats):
        if not line.strip():
            if block:
                yield emit("\n".join(block))
                block = []
        elif config.text_mode == "line":
            yield emit(line)
        else:
            block.append(line)
    if block:
        yield emit("\n".join(block))
