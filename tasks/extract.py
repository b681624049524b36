"""Extract stage: one raw file in, one Document parquet file out."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ExtractConfig
from tinylm.storage.documents import DocumentWriter, read_stats
from tinylm.storage.manifest import fingerprint
from tinylm.tasks.readers import ReadStats, TruncatedInputError, read_documents

log = logging.getLogger(__name__)


def extracted_path(output_dir: Path, source: Path, content_hash: str, config: ExtractConfig) -> Path:
    """Where a file's documents go: named by its content and the config, so a finished one is reused."""
    key = fingerprint("extract", config, {source.name: content_hash})[:16]
    return output_dir / f"{source.name}.{key}.parquet"


def extract_file(source: str | Path, content_hash: str, output_dir: str | Path, config: ExtractConfig) -> dict:
    """Write the documents of `source` to a parquet file in `output_dir` and return its stats.

    A file that was already extracted with the same content and config is not read again.
    On a truncated input, the documents read before the break are kept in a
    `.partial.parquet` file beside the output and the error names the file and position.
    """
    source, output_dir = Path(source), Path(output_dir)
    target = extracted_path(output_dir, source, content_hash, config)
    result = {"input": str(source), "output": str(target)}
    if target.exists():
        return result | read_stats(target) | {"reused": True}
    stats = ReadStats()
    partial = target.with_suffix(".partial.parquet")
    writer = DocumentWriter(target)
    try:
        for document in read_documents(source, config, stats):
            writer.write(document)
    except TruncatedInputError as error:
        writer.stats = stats.as_dict()
        writer.close(partial)
        raise TruncatedInputError(f"{error}; the {writer.rows} documents before the break are in {partial}") from error
    except BaseException:
        writer.abort()
        raise
    writer.stats = stats.as_dict()
    writer.close()
    if stats.bad_lines:
        log.warning("%s: skipped records, first bad lines %s", source, stats.bad_lines)
    return result | stats.as_dict() | {"reused": False}


extract_file_task = task(extract_file, name="extract-file", cache_policy=NO_CACHE, retries=0)
