import numpy as np

from tinylm.corpus.dedup.spill import AppendedRows, AppendedStrings, SortedKeyRuns


def test_sorted_key_runs_find_every_match_while_merging_and_spilling(tmp_path):
    rng = np.random.default_rng(0)
    runs = SortedKeyRuns(tmp_path, "keys", spill_rows=64, max_run_rows=256)
    stored = np.zeros((3, 0), dtype=np.uint64)
    for size in rng.integers(0, 40, size=60):
        queries = rng.integers(0, 400, size=(3, size)).astype(np.uint64)
        query, row = runs.pairs(queries)
        expected = {
            (q, r) for q in range(size) for r in range(stored.shape[1]) if (queries[:, q] == stored[:, r]).any()
        }
        assert set(zip(query.tolist(), row.tolist())) == expected
        runs.add(queries, stored.shape[1])
        stored = np.concatenate([stored, queries], axis=1)
        sizes = [run.shape[2] for run in runs.runs]
        assert all(older > 2 * newer or older + newer > 256 for older, newer in zip(sizes, sizes[1:])), sizes
    assert sum(sizes) == stored.shape[1] > 1000
    assert len(list(tmp_path.glob("keys-*.npy"))) == sum(size >= 64 for size in sizes) > 2
    assert all(isinstance(run, np.memmap) == (run.shape[2] >= 64) for run in runs.runs)


def test_appended_rows_and_strings_read_back_what_was_written(tmp_path):
    rows, strings = AppendedRows(tmp_path / "rows", "<u4", 3), AppendedStrings(tmp_path / "ids")
    assert rows.view().shape == (0, 3) and strings.get(np.zeros(0, dtype=np.int64)) == []
    rows.append(np.arange(6).reshape(2, 3))
    strings.append(["左传", "", "enwiki/12"])
    rows.append(np.arange(6, 9).reshape(1, 3))
    strings.append(["第三"])
    assert rows.view().tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert strings.get(np.array([3, 0, 1, 2])) == ["第三", "左传", "", "enwiki/12"]
