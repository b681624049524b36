"""Sorted lookup tables on disk: memory-mapped, binary-searched, never loaded whole.

datasketch's `MinHashLSH` keeps its band tables in a dict (or Redis). Rebuilding that
dict from a persistent index costs time in proportion to the index on every run; a
table of sorted keys in a `.npy` file is opened in microseconds and queried by binary
search, touching only the pages a query lands on, so a run's work grows with its own
documents. The band keys hash the same `r` signature values datasketch's bands hold, so
candidates are the ones its LSH would return (64-bit key collisions can add a spurious
candidate, which verification removes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinylm.storage.atomic import atomic_path

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands, documents) uint64: one key per band of `rows` consecutive signature values."""
    keys = np.zeros((bands, len(signatures)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            for value in signatures[:, band * rows : (band + 1) * rows].T:
                keys[band] = keys[band] * _MULTIPLIER + value
    return keys


def sorted_columns(keys: np.ndarray) -> np.ndarray:
    """(2, columns, documents): each column of `keys` sorted, and the document each key came from."""
    order = np.argsort(keys, axis=1, kind="stable")
    return np.stack([np.take_along_axis(keys, order, axis=1), order.astype(np.uint64)])


def matching_pairs(table: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query, document) index pairs, possibly repeated, whose keys agree in at least one column."""
    found_queries, found_documents = [], []
    for column, column_queries in enumerate(queries):
        keys = table[0, column]
        left = np.searchsorted(keys, column_queries, side="left")
        counts = np.searchsorted(keys, column_queries, side="right") - left
        hits = np.flatnonzero(counts)
        found_queries.append(np.repeat(hits, counts[hits]))
        found_documents.append(table[1, column][_expand_ranges(left[hits], counts[hits])].astype(np.int64))
    return np.concatenate(found_queries), np.concatenate(found_documents)


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every index of the ranges [start, start + count), one range after the other."""
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return offsets + np.arange(counts.sum())


def contains(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of `keys` is in the sorted `table`."""
    if len(table) == 0:
        return np.zeros(len(keys), dtype=bool)
    positions = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return table[positions] == keys


def save(path: Path, array: np.ndarray) -> None:
    """Write an `.npy` atomically: a reader sees the whole table or none."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.save(file, array)


def open_table(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
    """The table memory-mapped, or None when it is absent or not of the shape and type expected."""
    try:
        table = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return table if table.shape == shape and table.dtype == np.dtype(dtype) else None
