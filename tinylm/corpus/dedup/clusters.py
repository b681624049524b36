"""Near-duplicate clusters: connected components of verified LSH matches, and who each cluster keeps.

One home for the rule, so the single-host run (`deduplicate.py`) and the distributed one
(`staged.py`) cannot drift apart: each cluster keeps its longest document, ties going
to the smallest id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from tinylm.stats import Stats

_INITIAL = 1024


class UnionFind:
    """Union-find over candidate numbers in a numpy array that grows with them: 8 bytes per candidate, the only
    dedup state that is held in memory."""

    def __init__(self, size: int = 0) -> None:
        self.parent = np.arange(max(size, _INITIAL), dtype=np.int64)
        self.size = size

    def extend(self, count: int) -> None:
        if self.size + count > len(self.parent):
            self.parent = np.resize(self.parent, max(2 * len(self.parent), self.size + count))
        self.parent[self.size : self.size + count] = np.arange(self.size, self.size + count)
        self.size += count

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = int(parent[item])
        return item

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(first)] = self.find(second)

    def union_pairs(self, first: np.ndarray, second: np.ndarray) -> None:
        for a, b in zip(first.tolist(), second.tolist()):
            self.union(a, b)

    def roots(self) -> np.ndarray:
        """Every candidate's cluster root, by pointer jumping until nothing moves."""
        roots = self.parent[: self.size].copy()
        while not np.array_equal(jumped := roots[roots], roots):
            roots = jumped
        return roots


def cluster_losers(
    roots: np.ndarray,
    lengths_of: Callable[[np.ndarray], np.ndarray],
    ids_of: Callable[[np.ndarray], list[str]],
    stats: Stats,
) -> np.ndarray:
    """The candidates (sorted numbers) that lose to another of their cluster, counting clusters by size in `stats`.

    `lengths_of` and `ids_of` give the text lengths and ids of the candidates numbered, asked only for
    the members of clusters of two or more, which are few: the callers keep them on disk.
    """
    sizes = np.bincount(roots, minlength=len(roots))
    for size, count in sorted(Counter(sizes[sizes > 1].tolist()).items()):
        stats.update(f"near_duplicate_clusters.{size}", count)
    members = np.flatnonzero(sizes[roots] > 1)
    lengths, ids = lengths_of(members), ids_of(members)
    ranked = sorted(range(len(members)), key=lambda i: (roots[members[i]], -lengths[i], ids[i]))
    keepers: dict[int, int] = {}
    for i in ranked:
        keepers.setdefault(roots[members[i]], members[i])
    return np.setdiff1d(members, np.array(list(keepers.values()), dtype=np.int64))
