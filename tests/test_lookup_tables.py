"""On-disk band tables must find what datasketch's MinHashLSH finds."""

import numpy as np

from tinylm.config import DedupConfig
from tinylm.corpus.dedup import lookup_tables
from tinylm.corpus.dedup.index import banding, lsh_for, sketch
from tinylm.corpus.dedup.minhash import MinHasher


def test_band_tables_return_datasketch_candidates(zuozhuan, tmp_path):
    """Paragraphs and their prefixes/suffixes (partial overlaps give partial band agreement) at two thresholds."""
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 100][:200]
    stored = lines[:150]
    queries = [line[: len(line) * 3 // 4] for line in lines[::2]] + [line[len(line) // 5 :] for line in lines[1::2]]
    hasher = MinHasher()
    stored_signatures = hasher.signatures(stored, ["zh"] * len(stored), 5, 5)
    query_signatures = hasher.signatures(queries, ["zh"] * len(queries), 5, 5)
    for threshold in (0.8, 0.5):
        config = DedupConfig(threshold=threshold)
        lsh = lsh_for(config)
        for row, signature in enumerate(stored_signatures):
            lsh.insert(row, sketch(signature, config))
        path = tmp_path / f"bands-{threshold}.npy"
        lookup_tables.save(
            path, lookup_tables.sorted_columns(lookup_tables.band_keys(stored_signatures, *banding(config)))
        )
        table = lookup_tables.open_table(path, (2, banding(config)[0], len(stored)), "<u8")
        query, document = lookup_tables.matching_pairs(
            table, lookup_tables.band_keys(query_signatures, *banding(config))
        )
        ours = {(int(q), int(d)) for q, d in zip(query, document)}
        theirs = {(q, d) for q, signature in enumerate(query_signatures) for d in lsh.query(sketch(signature, config))}
        assert ours == theirs
        matched = {q for q, _ in theirs}
        assert 20 < len(matched) < len(queries) - 20, "the sample must exercise both hits and misses"


def test_contains_finds_exact_byte_strings():
    keys = [bytes([i]) * 15 + b"\x00" for i in range(5)] + [b"\x00" * 16]
    table = np.sort(np.array(keys, dtype="S16"))
    probes = np.array([keys[2], keys[5], b"\x01" * 16, b"\xff" * 16], dtype="S16")
    assert lookup_tables.contains(table, probes).tolist() == [True, True, False, False]
    assert not lookup_tables.contains(np.zeros(0, dtype="S16"), probes).any()


def test_a_table_of_another_shape_or_a_damaged_file_is_not_opened(tmp_path):
    path = tmp_path / "table.npy"
    lookup_tables.save(path, np.arange(6, dtype="<u8").reshape(2, 3))
    assert lookup_tables.open_table(path, (2, 3), "<u8") is not None
    assert lookup_tables.open_table(path, (3, 2), "<u8") is None
    assert lookup_tables.open_table(path, (2, 3), "<u4") is None
    path.write_bytes(path.read_bytes()[:-8])
    assert lookup_tables.open_table(path, (2, 3), "<u8") is None
    assert lookup_tables.open_table(tmp_path / "absent.npy", (2, 3), "<u8") is None
