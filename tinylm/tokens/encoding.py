"""Encode one corpus part: its documents' token ids, EOS after each, in one flat file.

Beside the ids goes a small table with a row per document (source, seeded unit, token
count), in corpus order, so the mixing step can place, repeat or hold out any document
by reading the table alone and slicing the ids from a memory map. A part is encoded
once per tokenizer and seed; the table is written last, so its presence (with ids of
the size it adds up to) means the part is done and a re-run after a kill skips it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from tinylm.storage.atomic import atomic_path
from tinylm.storage.documents import iter_document_batches
from tinylm.tokens.sampling import document_unit
from tinylm.tokens.shard_files import token_dtype
from tinylm.tokens.tokenizer_files import EOS, load_tokenizer

DOCUMENTS_SCHEMA = pa.schema([("source", pa.string()), ("unit", pa.float64()), ("tokens", pa.int64())])


@dataclass(frozen=True)
class EncodedPart:
    """A part's ids file and its per-document table."""

    ids: Path
    documents: Path
    dtype: str

    @classmethod
    def at(cls, work_dir: Path, part: Path, dtype: np.dtype) -> EncodedPart:
        return cls(work_dir / f"{part.stem}.ids", work_dir / f"{part.stem}.documents.parquet", dtype.str)

    def is_complete(self) -> bool:
        if not (self.documents.exists() and self.ids.exists()):
            return False
        tokens = pq.read_table(self.documents, columns=["tokens"]).column(0).to_numpy().sum()
        return self.ids.stat().st_size == int(tokens) * np.dtype(self.dtype).itemsize

    def memmap(self) -> np.ndarray:
        if self.ids.stat().st_size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.ids, dtype=self.dtype, mode="r")


@functools.lru_cache(maxsize=2)
def _shared_tokenizer(tokenizer_dir: Path, tokenizer_sha256: str) -> Tokenizer:
    """One loaded tokenizer for all the parts a process encodes (a 32k vocabulary takes 40 ms to load)."""
    return load_tokenizer(tokenizer_dir)


def encode_part(
    part: Path, tokenizer_dir: Path, tokenizer_sha256: str, work_dir: Path, seed: int, batch_documents: int
) -> EncodedPart:
    """Encode `part` into `work_dir` (or find it already encoded there).

    `encode_batch_fast` skips the character offsets nobody here reads, and the ids of a
    batch go to numpy in one `fromiter`, which keeps the stage near raw `encode_batch`.
    """
    tokenizer = _shared_tokenizer(tokenizer_dir, tokenizer_sha256)
    dtype = token_dtype(tokenizer.get_vocab_size())
    encoded = EncodedPart.at(work_dir, part, dtype)
    if encoded.is_complete():
        return encoded
    eos = tokenizer.token_to_id(EOS)
    with atomic_path(encoded.documents) as table_tmp, atomic_path(encoded.ids) as ids_tmp:  # ids commit first
        with open(ids_tmp, "wb") as ids_file, pq.ParquetWriter(table_tmp, DOCUMENTS_SCHEMA) as table:
            for batch in iter_document_batches([part], ["id", "source", "text"], batch_documents):
                encodings = tokenizer.encode_batch_fast(batch.column("text").to_pylist(), add_special_tokens=False)
                per_document = [encoding.ids + [eos] for encoding in encodings]
                np.fromiter(chain.from_iterable(per_document), dtype=dtype).tofile(ids_file)
                units = [document_unit(doc_id, seed) for doc_id in batch.column("id").to_pylist()]
                lengths = pa.array([len(ids) for ids in per_document], pa.int64())
                table.write_batch(
                    pa.record_batch(
                        [batch.column("source"), pa.array(units, pa.float64()), lengths], schema=DOCUMENTS_SCHEMA
                    )
                )
    return encoded
