"""The one counting helper: counters and groups add up across files the way every stage reports them."""

from tinylm.stats import KEPT_BAD_RECORDS, Stats


def test_counters_nest_at_their_first_dot_and_declared_ones_show_at_zero():
    stats = Stats("records", "documents", groups=("skipped",))
    assert stats.as_dict() == {"skipped": {}, "records": 0, "documents": 0}
    stats.update("records", 3)
    stats.skip("invalid_json", record=2)
    stats.skip("empty")
    stats.update("near_duplicate_clusters.2", 4)
    assert stats.as_dict() == {
        "skipped": {"empty": 1, "invalid_json": 1},
        "records": 3,
        "documents": 0,
        "near_duplicate_clusters": {"2": 4},
        "first_bad_records": [2],
        "first_skipped": {"invalid_json": [2]},
    }
    assert stats.group("skipped") == {"empty": 1, "invalid_json": 1}
    assert stats.skipped_summary() == "empty 1, invalid_json 1 (first at 2)"


def test_results_of_many_files_sum_and_keep_only_the_first_bad_records():
    first, second = Stats("kept", groups=("dropped",)), Stats("kept", groups=("dropped",))
    first.drop("too_short")
    first.update("kept", 2)
    for record in range(KEPT_BAD_RECORDS):
        second.skip("invalid_json", record)
    second.drop("too_short")
    second.drop("repeated_lines")
    results = [{"input": "a.parquet", "reused": True} | first.as_dict(), {"input": "b.parquet"} | second.as_dict()]
    total = Stats.total(results)
    assert total.as_dict() == {
        "dropped": {"repeated_lines": 1, "too_short": 2},
        "kept": 2,
        "skipped": {"invalid_json": KEPT_BAD_RECORDS},
        "first_bad_records": list(range(KEPT_BAD_RECORDS)),
        "first_skipped": {"invalid_json": list(range(KEPT_BAD_RECORDS))},
    }
    assert Stats.total([{"dropped": {}}]).as_dict() == {"dropped": {}}, "an empty group survives the sum"
