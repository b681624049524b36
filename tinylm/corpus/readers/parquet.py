"""Parquet: one document per row, its text in `config.parquet_text_column` (and a `title` column if present)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from tinylm.config import ExtractConfig
from tinylm.corpus.readers.base import source_name
from tinylm.stats import Stats
from tinylm.storage.documents import Document, make_document, read_batches

_BATCH_ROWS = 1024


def read_parquet(path: Path, config: ExtractConfig, stats: Stats) -> Iterator[Document]:
    """Reads the file itself: parquet is read by column chunks, not as one decompressed stream."""
    source = source_name(path)
    parquet = pq.ParquetFile(path)
    columns = [config.parquet_text_column] + (["title"] if "title" in parquet.schema_arrow.names else [])
    if config.parquet_text_column not in parquet.schema_arrow.names:
        raise ValueError(f"{path} has no column {config.parquet_text_column!r} (columns: {parquet.schema_arrow.names})")
    for batch in read_batches(path, _BATCH_ROWS, columns):
        for row in batch.to_pylist():
            stats.update("records")
            text = row[config.parquet_text_column]
            if not isinstance(text, str) or not text.strip():
                stats.skip("empty")
                continue
            stats.update("documents")
            number = stats["records"]
            yield make_document(
                source, number, text.strip(), title=row.get("title"), url=f"file://{path.name}#{number}"
            )
