"""Disk-backed state of one dedup run, so its memory stays flat however large the corpus.

A run must compare each new document with every earlier one of the same run. Kept in
Python objects (a set of exact keys, datasketch's in-memory LSH, a signature array per
document) that costs about 5 KB per document: 3 GB at 1.6 GB of text, as `bench/scale.py`
measured. Here what grows with the run lives in files of a scratch directory:

  * `AppendedRows`: fixed-width rows (signatures, keys, lengths) appended as they come and
    read back memory-mapped, so their pages belong to the page cache, not the process;
  * `SortedKeyRuns`: the run's lookup keys as sorted runs, the same `(2, columns, rows)`
    tables the persistent index keeps and queried the same way
    (`lookup_tables.matching_pairs`). Each batch adds a small run; runs merge as in a
    log-structured merge tree (a run absorbs the next while it is at most twice its size),
    so there are O(log n) of them, and a merged run of `SPILL_ROWS` or more is written to
    disk column by column and memory-mapped. No well-kept library offers an on-disk LSH
    that appends and queries in batches from numpy, hence this small one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from tinylm.corpus.dedup.lookup_tables import matching_pairs, sorted_columns

SPILL_ROWS = 1 << 15
MAX_RUN_ROWS = 1 << 20


class AppendedRows:
    """A growing array of fixed-width rows in a file: appended in batches, read memory-mapped."""

    def __init__(self, path: Path, dtype: str | np.dtype, width: int = 1) -> None:
        self.path, self.dtype, self.width = path, np.dtype(dtype), width
        self.rows = 0
        self._view: np.ndarray | None = None
        path.write_bytes(b"")

    def append(self, rows: np.ndarray) -> None:
        with open(self.path, "ab") as file:
            np.ascontiguousarray(rows, dtype=self.dtype).tofile(file)
        self.rows += len(rows)
        self._view = None

    def view(self) -> np.ndarray:
        """Everything appended so far, memory-mapped; (rows, width) when rows are wider than one value."""
        if self._view is None:
            shape = (self.rows, self.width) if self.width > 1 else (self.rows,)
            self._view = (
                np.memmap(self.path, dtype=self.dtype, mode="r", shape=shape)
                if self.rows
                else np.zeros(shape, self.dtype)
            )
        return self._view


class SortedKeyRuns:
    """Lookup keys of numbered rows (row n's keys added n-th), in sorted runs merged as they grow."""

    def __init__(
        self, directory: Path, name: str, spill_rows: int = SPILL_ROWS, max_run_rows: int = MAX_RUN_ROWS
    ) -> None:
        self.directory, self.name = directory, name
        self.spill_rows, self.max_run_rows = spill_rows, max_run_rows
        self.runs: list[np.ndarray] = []
        self._files = 0

    def pairs(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query, row) index pairs, possibly repeated, whose keys agree in at least one column."""
        found = [matching_pairs(run, queries) for run in self.runs]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([q for q, _ in found]), np.concatenate([r for _, r in found])

    def add(self, keys: np.ndarray, first_row: int) -> None:
        """Add `keys` (columns, n) of rows `first_row`, `first_row` + 1, ..."""
        if keys.shape[1] == 0:
            return
        run = sorted_columns(keys)
        run[1] += np.uint64(first_row)
        self.runs.append(run)
        while len(self.runs) > 1 and self._mergeable(self.runs[-2], self.runs[-1]):
            self.runs[-2:] = [self._merge(self.runs[-2], self.runs[-1])]

    def _mergeable(self, older: np.ndarray, newer: np.ndarray) -> bool:
        return older.shape[2] <= 2 * newer.shape[2] and older.shape[2] + newer.shape[2] <= self.max_run_rows

    def _merge(self, older: np.ndarray, newer: np.ndarray) -> np.ndarray:
        """Both runs as one, built a column at a time so only one column is ever in memory."""
        columns, rows = older.shape[1], older.shape[2] + newer.shape[2]
        if rows >= self.spill_rows:
            self._files += 1
            merged = open_memmap(
                self.directory / f"{self.name}-{self._files}.npy", mode="w+", dtype=np.uint64, shape=(2, columns, rows)
            )
        else:
            merged = np.empty((2, columns, rows), dtype=np.uint64)
        for column in range(columns):
            keys = np.concatenate([older[0, column], newer[0, column]])
            order = np.argsort(keys, kind="stable")
            merged[0, column] = keys[order]
            merged[1, column] = np.concatenate([older[1, column], newer[1, column]])[order]
        if isinstance(merged, np.memmap):
            merged.flush()
        for run in (older, newer):
            if isinstance(run, np.memmap):
                Path(run.filename).unlink()
        return merged


class AppendedStrings:
    """A growing list of strings in a file (their UTF-8 bytes back to back, and where each ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ends = AppendedRows(path.with_name(f"{path.name}.ends"), np.int64)
        self._size = 0
        path.write_bytes(b"")

    def append(self, strings: list[str]) -> None:
        encoded = [text.encode("utf-8") for text in strings]
        with open(self.path, "ab") as file:
            file.write(b"".join(encoded))
        sizes = np.array([len(item) for item in encoded], dtype=np.int64)
        self.ends.append(self._size + np.cumsum(sizes))
        self._size += int(sizes.sum())

    def get(self, rows: np.ndarray) -> list[str]:
        ends = self.ends.view()
        data = np.memmap(self.path, dtype=np.uint8, mode="r") if self._size else np.zeros(0, np.uint8)
        return [bytes(data[(ends[row - 1] if row else 0) : ends[row]]).decode("utf-8") for row in rows]
