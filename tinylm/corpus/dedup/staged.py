"""Dedup over many workers: the single-host rules of `deduplicate.py`, in stages whose tasks each read a slice.

The stages are datatrove's MinHash stages (signatures, buckets, clusters, filter), with exact dedup beside them:

  1. `sign_source`, a task per source file where its documents are: exact keys, copies within the file, lookups
     in the persistent index (its memory-mapped tables, or Redis) and signatures, each band's keys sorted;
  2. `exact_partition`, a task per range of exact keys: a key met in several files keeps its first document;
  3. `settle_exact`, one small task: each file's verdicts with those copies, and its near-dedup candidates;
  4. `band_pairs`, a task per LSH band: the candidate pairs sharing a key in that band, verified by signature;
  5. `near_duplicates`, one task: connected components of the pairs (a union-find of 8 bytes per candidate, the
     state the single-host run holds too) and the documents each cluster drops;
  6. `write_source`, a task per source file: `parts.write_part`, the same writer the single-host run uses.

Every task reads and writes files in a scratch folder beside the output, so the workers need the workspace on a
shared filesystem, as the extraction and clean stages do. Decisions never depend on which worker ran what or in
what order, so the output equals the single-host run's, which the tests check document for document.
`deduplicate_in_stages` runs the stages through any `FanOut`: Prefect task runs on Dask or Ray in `flows/`, a
plain loop in tests. Memory: a signing task holds its file's exact keys (16 bytes a document), an exact task its
range of every file's keys, a band task every candidate's key in its band (16 bytes a candidate), the clusters
task 8 bytes a candidate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tinylm.config import DedupConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.dedup.clusters import UnionFind, cluster_losers
from tinylm.corpus.dedup.deduplicate import (
    SCRATCH,
    STATS,
    add_to_index,
    exact_key,
    keeps_an_index,
    known_documents,
    refuse_an_empty_result,
)
from tinylm.corpus.dedup.index import CorpusKey, DedupIndex, PartWriter, as_corpus_key, banding, read_part
from tinylm.corpus.dedup.lookup_tables import band_keys, save
from tinylm.corpus.dedup.minhash import MinHasher
from tinylm.corpus.dedup.parts import (
    BATCH,
    EXACT_DUPLICATE,
    KEPT,
    NEAR_DUPLICATE,
    NEAR_DUPLICATE_OF_INDEX,
    KeptRows,
    write_part,
)
from tinylm.stats import Stats
from tinylm.storage.documents import read_batches

FanOut = Callable[[Callable[..., Any], list[tuple]], list[Any]]
"""Runs a function once per tuple of arguments, anywhere, and returns the results in order."""


def deduplicate_in_stages(
    sources: list[str],
    output_dir: str,
    config: DedupConfig,
    fan_out: FanOut,
    index_dir: str | None = None,
    corpus: CorpusKey | str = "",
    rejected_dir: str | None = None,
    allow_empty: bool = False,
) -> dict:
    """`deduplicate_files`, with its work spread by `fan_out`: the same parts, rejected files, index and counts."""
    keeps_index = keeps_an_index(config, index_dir)
    index = DedupIndex(index_dir, config) if index_dir else None
    corpus = as_corpus_key(corpus)
    if index is not None:
        index.tables(skip=corpus)  # built once here, not raced by every signing task
    scratch = Path(output_dir) / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        count = len(sources)
        copies_of_index = fan_out(
            sign_source, [(source, n, str(scratch), config, index_dir, corpus) for n, source in enumerate(sources)]
        )
        partitions = banding(config)[0]
        exact_files = (
            fan_out(exact_partition, [(str(scratch), count, part, partitions) for part in range(partitions)])
            if config.exact
            else []
        )
        [(counts, settled)] = fan_out(settle_exact, [(str(scratch), count, exact_files)])
        stats = Stats(*STATS)
        stats.counts.update(settled)
        stats.update("exact_duplicates_of_index", sum(copies_of_index))
        if config.near:
            pair_files = fan_out(band_pairs, [(str(scratch), counts, band, config) for band in range(partitions)])
            [clustered] = fan_out(near_duplicates, [(str(scratch), counts, pair_files)])
            stats.counts.update(clustered)
        stats.update("kept", sum(counts) - stats["near_duplicates"])
        refuse_an_empty_result(stats.as_dict(), allow_empty)
        calls = [
            (source, n, str(scratch), output_dir, config, keeps_index, rejected_dir) for n, source in enumerate(sources)
        ]
        written = fan_out(write_source, calls)
        rejected: dict[str, list[str]] = {}
        for part in written:
            for reason, path in part["rejected"].items():
                rejected.setdefault(reason, []).append(path)
        result = stats.as_dict() | {
            "parts": [{"path": part["path"], "documents": part["documents"]} for part in written],
            "rejected": rejected,
        }
        if keeps_index:
            joined = scratch / "index-part.parquet"
            join_index_parts([part["index_part"] for part in written], joined, config.num_perm)
            result |= add_to_index(joined, index, known_documents(config, index, corpus))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def source_folder(scratch: Path, number: int) -> Path:
    return scratch / f"source-{number:05d}"


def sign_source(
    source: str, number: int, scratch: str, config: DedupConfig, index_dir: str | None, corpus: CorpusKey
) -> int:
    """Stage 1 for one source file. Its verdicts so far (copies within the file, exact and near matches of the
    index) and, for the rest (its candidates), exact keys, signatures, lengths, ids and band keys. Returns how many
    of its documents the index holds exactly."""
    folder = source_folder(Path(scratch), number)
    folder.mkdir(parents=True, exist_ok=True)
    known = known_documents(config, DedupIndex(index_dir, config) if index_dir else None, corpus)
    hasher = MinHasher(config.num_perm, config.seed)
    verdicts, keys, signatures, lengths, ids = [], [], [], [], []
    seen: set[bytes] = set()
    copies_of_index = 0
    for batch in read_batches(source, BATCH, ["id", "text", "lang"]):
        documents = batch.to_pylist()
        texts = [without_chat_markers(document["text"]) for document in documents]
        batch_keys = [exact_key(text) for text in texts]
        verdict = np.full(len(documents), KEPT, dtype=np.int8)
        if config.exact:
            in_file = np.array([key in seen or seen.add(key) is not None for key in batch_keys], dtype=bool)
            in_index = known.seen_exact(batch_keys)
            verdict[in_index | in_file] = EXACT_DUPLICATE
            copies_of_index += int(in_index.sum())
        if config.near:
            fresh = np.flatnonzero(verdict == KEPT)
            batch_signatures = hasher.signatures(
                [texts[row] for row in fresh],
                [documents[row]["lang"] for row in fresh],
                config.zh_ngram,
                config.en_ngram,
            )
            of_index = known.near(batch_signatures)
            verdict[fresh[of_index]] = NEAR_DUPLICATE_OF_INDEX
            signatures.append(batch_signatures[~of_index])
        signed = np.flatnonzero(verdict == KEPT)
        verdicts.append(verdict)
        keys.append(np.array(batch_keys, dtype="S16"))
        lengths.append(np.array([len(documents[row]["text"]) for row in signed], dtype=np.int64))
        ids.extend(documents[row]["id"] for row in signed)
    verdict = np.concatenate(verdicts) if verdicts else np.zeros(0, np.int8)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, "S16")
    save(folder / "verdicts.npy", verdict)
    # The keys later files' copies are judged against: each first copy's in this file, whatever became of it (one
    # dropped as a near duplicate of the index still makes its copies exact duplicates, as on one host).
    keyed = np.flatnonzero(verdict != EXACT_DUPLICATE) if config.exact else np.zeros(0, np.int64)
    order = np.argsort(all_keys[keyed], kind="stable")
    save(folder / "exact-keys.npy", all_keys[keyed][order])
    save(folder / "exact-rows.npy", keyed[order])
    save(folder / "candidate-keys.npy", all_keys[verdict == KEPT])
    save(folder / "lengths.npy", np.concatenate(lengths) if lengths else np.zeros(0, np.int64))
    pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), folder / "ids.parquet")
    if config.near:
        all_signatures = np.concatenate(signatures) if signatures else np.zeros((0, config.num_perm), "<u4")
        save(folder / "signatures.npy", all_signatures)
        save(folder / "bands.npy", band_keys(all_signatures, *banding(config)))
    return copies_of_index


def exact_partition(scratch: str, sources: int, partition: int, partitions: int) -> str:
    """Stage 2 for the exact keys whose first byte falls in one of `partitions` ranges: the (source, row) of every
    document whose key an earlier file holds, as a (2, copies) array in a file."""
    low, high = 256 * partition // partitions, 256 * (partition + 1) // partitions
    keys, files, rows = [], [], []
    for number in range(sources):
        folder = source_folder(Path(scratch), number)
        table = np.load(folder / "exact-keys.npy", mmap_mode="r")
        first_bytes = table.view(np.uint8).reshape(len(table), 16)[:, 0] if len(table) else np.zeros(0, np.uint8)
        start, stop = np.searchsorted(first_bytes, [low, high])
        keys.append(np.asarray(table[start:stop]))
        rows.append(np.load(folder / "exact-rows.npy", mmap_mode="r")[start:stop])
        files.append(np.full(stop - start, number, np.int64))
    key, file, row = np.concatenate(keys), np.concatenate(files), np.concatenate(rows)
    order = np.lexsort((row, file, key))
    key, file, row = key[order], file[order], row[order]
    later = np.flatnonzero(key[1:] == key[:-1]) + 1
    path = Path(scratch) / f"exact-{partition:05d}.npy"
    save(path, np.stack([file[later], row[later]]))
    return str(path)


def settle_exact(scratch: str, sources: int, exact_files: list[str]) -> tuple[list[int], dict[str, int]]:
    """Stage 3: each file's verdicts with the copies found across files, and its candidates (the signed rows still
    kept; their numbering runs over the files in order). Returns each file's number of candidates, and counts."""
    copies = np.concatenate([np.load(path) for path in exact_files], axis=1) if exact_files else np.zeros((2, 0))
    counts, stats = [], Stats()
    for number in range(sources):
        folder = source_folder(Path(scratch), number)
        verdicts = np.load(folder / "verdicts.npy")
        signed = np.flatnonzero(verdicts == KEPT)
        verdicts[copies[1][copies[0] == number].astype(np.int64)] = EXACT_DUPLICATE
        save(folder / "settled.npy", verdicts)
        save(folder / "candidates.npy", np.flatnonzero(verdicts[signed] == KEPT))
        counts.append(int((verdicts == KEPT).sum()))
        stats.update("documents", len(verdicts))
        stats.update("exact_duplicates", int((verdicts == EXACT_DUPLICATE).sum()))
        stats.update("near_duplicates_of_index", int((verdicts == NEAR_DUPLICATE_OF_INDEX).sum()))
    return counts, dict(stats.counts)


class _Candidates:
    """The candidates of every file, numbered in corpus order, read from the files' scratch folders."""

    def __init__(self, scratch: str, counts: list[int]) -> None:
        self.folders = [source_folder(Path(scratch), number) for number in range(len(counts))]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def numbers_of_signed_rows(self, number: int) -> np.ndarray:
        """The candidate number of each signed row of a file, -1 for those that are not candidates any more."""
        folder = self.folders[number]
        numbers = np.full(len(np.load(folder / "lengths.npy", mmap_mode="r")), -1, np.int64)
        candidates = np.load(folder / "candidates.npy")
        numbers[candidates] = self.starts[number] + np.arange(len(candidates))
        return numbers

    def _located(self, numbers: np.ndarray) -> Sequence[tuple[np.ndarray, Path, np.ndarray]]:
        """For each file holding some of `numbers`: where they are in `numbers`, the folder, their signed rows."""
        owners = np.searchsorted(self.starts, numbers, side="right") - 1
        located = []
        for number in np.unique(owners).tolist():
            at = np.flatnonzero(owners == number)
            folder = self.folders[number]
            located.append((at, folder, np.load(folder / "candidates.npy")[numbers[at] - self.starts[number]]))
        return located

    def signatures(self, numbers: np.ndarray, width: int) -> np.ndarray:
        found = np.zeros((len(numbers), width), "<u4")
        for at, folder, rows in self._located(numbers):
            found[at] = np.load(folder / "signatures.npy", mmap_mode="r")[rows]
        return found

    def lengths(self, numbers: np.ndarray) -> np.ndarray:
        found = np.zeros(len(numbers), np.int64)
        for at, folder, rows in self._located(numbers):
            found[at] = np.load(folder / "lengths.npy", mmap_mode="r")[rows]
        return found

    def ids(self, numbers: np.ndarray) -> list[str]:
        found = [""] * len(numbers)
        for at, folder, rows in self._located(numbers):
            for position, doc_id in zip(
                at.tolist(), pq.read_table(folder / "ids.parquet")["id"].take(rows).to_pylist()
            ):
                found[position] = doc_id
        return found


def band_pairs(scratch: str, counts: list[int], band: int, config: DedupConfig) -> str:
    """Stage 4 for one band: every pair of candidates whose keys agree in it, verified by the Jaccard their
    signatures estimate (as the single-host run verifies each match), as a (2, pairs) array in a file."""
    candidates = _Candidates(scratch, counts)
    keys, numbers = [], []
    for number, folder in enumerate(candidates.folders):
        of_row = candidates.numbers_of_signed_rows(number)
        wanted = of_row >= 0
        keys.append(np.load(folder / "bands.npy", mmap_mode="r")[band][wanted])
        numbers.append(of_row[wanted])
    key, number = np.concatenate(keys), np.concatenate(numbers)
    order = np.lexsort((number, key))
    first, second = _pairs_within_groups(key[order], number[order])
    if config.verify and len(first):
        agree = candidates.signatures(first, config.num_perm) == candidates.signatures(second, config.num_perm)
        verified = agree.mean(axis=1) >= config.threshold
        first, second = first[verified], second[verified]
    path = Path(scratch) / f"pairs-{band:05d}.npy"
    save(path, np.stack([first, second]))
    return str(path)


def _pairs_within_groups(key: np.ndarray, number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (earlier, later) pair of numbers whose sorted keys are equal: the members of groups of two or more,
    paired at distance 1, 2, ... within their group (the longest group bounds the loop)."""
    shared = np.zeros(len(key), dtype=bool)
    same = key[1:] == key[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    key, number = key[shared], number[shared]
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for distance in range(1, len(key)):
        same = np.flatnonzero(key[distance:] == key[:-distance])
        if not len(same):
            break
        firsts.append(number[same])
        seconds.append(number[same + distance])
    return np.concatenate(firsts), np.concatenate(seconds)


def near_duplicates(scratch: str, counts: list[int], pair_files: list[str]) -> dict[str, int]:
    """Stage 5: the clusters of all bands' pairs, and the candidates each drops, written per file as the signed rows
    to drop (`near-duplicates.npy`). Returns the counts."""
    clusters = UnionFind(sum(counts))
    for path in pair_files:
        first, second = np.load(path)
        clusters.union_pairs(first, second)
    candidates, stats = _Candidates(scratch, counts), Stats()
    removed = cluster_losers(clusters.roots(), candidates.lengths, candidates.ids, stats)
    stats.update("near_duplicates", len(removed))
    for number, folder in enumerate(candidates.folders):
        start, stop = candidates.starts[number], candidates.starts[number + 1]
        mine = removed[(removed >= start) & (removed < stop)] - start
        save(folder / "near-duplicates.npy", np.load(folder / "candidates.npy")[mine])
    return dict(stats.counts)


def write_source(
    source: str, number: int, scratch: str, output: str, config: DedupConfig, keep_index: bool, rejected: str | None
) -> dict:
    """Stage 6 for one source file: its part, its rejected documents and, with `keep_index`, its index rows."""
    folder = source_folder(Path(scratch), number)
    verdicts = np.load(folder / "settled.npy")
    signed = np.flatnonzero(np.load(folder / "verdicts.npy") == KEPT)
    dropped = np.load(folder / "near-duplicates.npy") if config.near else np.zeros(0, np.int64)
    verdicts[signed[dropped]] = NEAR_DUPLICATE
    part = Path(output) / f"part-{number:05d}.parquet"
    rejected_root = None if rejected is None else Path(rejected)
    index_file = folder / "index-part.parquet"
    if keep_index:
        kept = np.setdiff1d(np.load(folder / "candidates.npy"), dropped, assume_unique=True)
        signatures = np.load(folder / "signatures.npy", mmap_mode="r")
        rows = KeptRows(np.load(folder / "candidate-keys.npy"), signatures, kept)
        with PartWriter(index_file, config.num_perm) as index_part:
            written = write_part(source, part, verdicts, rows, index_part, rejected_root)
    else:
        written = write_part(source, part, verdicts, rejected_root=rejected_root)
    return {
        "path": part.name,
        "documents": written.documents,
        "rejected": written.rejected,
        "index_part": str(index_file),
    }


def join_index_parts(parts: list[str], target: Path, num_perm: int) -> None:
    """The workers' index parts as one, in file order: the part a single-host run writes."""
    with PartWriter(target, num_perm) as writer:
        for part in parts:
            for rows in read_part(Path(part), num_perm):
                writer.write(rows)
