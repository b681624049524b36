"""Dedup's last pass over a source: its kept documents to a part, the removed ones to `rejected/`, the kept ones'
keys and signatures to the index part.

Both ways of deciding (one host, or many workers) end in a verdict per document of the source, and this one
function writes them, so the files they produce are the same by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tinylm.corpus.dedup.index import IndexPart, PartWriter
from tinylm.corpus.rejected import RejectedWriters
from tinylm.storage.documents import DocumentWriter, read_batches

KEPT = -1
REASONS = ("exact_duplicate", "near_duplicate_of_index", "near_duplicate")
EXACT_DUPLICATE, NEAR_DUPLICATE_OF_INDEX, NEAR_DUPLICATE = range(3)
BATCH = 1024


@dataclass(frozen=True)
class KeptRows:
    """Where the kept documents' index rows are: row `rows[k]` of `exact_keys` and `signatures` belongs to the
    source's k-th kept document. The tables may be memory-mapped; they are read a batch at a time."""

    exact_keys: np.ndarray
    signatures: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class WrittenPart:
    path: Path
    documents: int
    rejected: dict[str, str]


def write_part(
    source: str | Path,
    part: Path,
    verdicts: np.ndarray,
    index_rows: KeptRows | None = None,
    index_part: PartWriter | None = None,
    rejected_root: Path | None = None,
) -> WrittenPart:
    """Write the documents of `source` whose verdict is KEPT to `part`. `verdicts` holds one per document: KEPT or
    an index into REASONS. With `rejected_root`, the others go to `rejected_root/<reason>/<part>.parquet`."""
    first, kept_so_far = 0, 0
    with DocumentWriter(part) as writer, RejectedWriters(rejected_root, part.stem) as removals:
        for batch in read_batches(source, BATCH):
            verdict = verdicts[first : first + batch.num_rows]
            kept = np.flatnonzero(verdict == KEPT)
            chosen = batch.take(pa.array(kept))
            for document in chosen.to_pylist():
                writer.write(document)
            if index_part is not None and index_rows is not None:
                rows = index_rows.rows[kept_so_far : kept_so_far + len(kept)]
                ids = chosen.column("id").to_pylist()
                index_part.write(IndexPart(ids, list(index_rows.exact_keys[rows]), index_rows.signatures[rows]))
            if rejected_root is not None:
                removed = np.flatnonzero(verdict != KEPT)
                documents = batch.take(pa.array(removed)).to_pylist()
                for document, reason in zip(documents, verdict[removed].tolist(), strict=True):
                    removals.write(REASONS[reason], document)
            first += batch.num_rows
            kept_so_far += len(kept)
        if first != len(verdicts):
            raise ValueError(f"{source} has {first} documents where dedup read {len(verdicts)}: it changed meanwhile")
    return WrittenPart(part, writer.rows, removals.paths)
