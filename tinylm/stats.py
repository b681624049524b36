"""One way to count: every stage's counters, kept, merged and shown the same way.

Modelled on datatrove's `stat_update`: work bumps named counters (`records`,
`skipped.invalid_json`, `dropped.too_short`) instead of keeping a dict shape of its own,
and the results of many files or tasks merge by adding their counters. A dot in a
name nests it when shown, so a manifest reads `{"skipped": {"invalid_json": 3}}`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

KEPT_BAD_RECORDS = 5


class Stats:
    """Counters by dotted name, and the numbers of the first few bad records for the log."""

    def __init__(self, *names: str, groups: tuple[str, ...] = ()) -> None:
        """`names` are counters, and `groups` groups of counters, shown even while zero or empty,
        so every result of a stage has the same fields."""
        self.counts: Counter[str] = Counter({name: 0 for name in names})
        self.groups = groups
        self.first_bad_records: list[int] = []
        self.first_skipped: dict[str, list[int]] = {}  # the first few record numbers of each skip reason

    def update(self, name: str, value: int = 1) -> None:
        self.counts[name] += value

    def skip(self, reason: str, record: int | None = None) -> None:
        """An input record that yields nothing, counted as `skipped.<reason>`."""
        self.update(f"skipped.{reason}")
        if record is None:
            return
        if len(self.first_bad_records) < KEPT_BAD_RECORDS:
            self.first_bad_records.append(record)
        kept = self.first_skipped.setdefault(reason, [])
        if len(kept) < KEPT_BAD_RECORDS:
            kept.append(record)

    def drop(self, reason: str) -> None:
        """A document removed on purpose (a filter rule), counted as `dropped.<reason>`."""
        self.update(f"dropped.{reason}")

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def group(self, prefix: str) -> dict[str, int]:
        """The counters under `prefix.`, by the rest of their names: `group("skipped")`."""
        start = len(prefix) + 1
        return {name[start:]: value for name, value in sorted(self.counts.items()) if name.startswith(f"{prefix}.")}

    def merge(self, other: Stats) -> Stats:
        self.counts.update(other.counts)
        self.groups = tuple(dict.fromkeys(self.groups + other.groups))
        self.first_bad_records.extend(other.first_bad_records[: KEPT_BAD_RECORDS - len(self.first_bad_records)])
        for reason, records in other.first_skipped.items():
            kept = self.first_skipped.setdefault(reason, [])
            kept.extend(records[: KEPT_BAD_RECORDS - len(kept)])
        return self

    def skipped_summary(self) -> str:
        """The skips in a line for a log: each reason's count, and where its first records are."""
        return ", ".join(
            f"{reason} {count}"
            + (f" (first at {', '.join(map(str, self.first_skipped[reason]))})" if reason in self.first_skipped else "")
            for reason, count in self.group("skipped").items()
            if count
        )

    def as_dict(self) -> dict[str, Any]:
        """Counters nested at their first dot, plus `first_bad_records` and `first_skipped` (by reason) when there
        were any."""
        shown: dict[str, Any] = {group: {} for group in self.groups}
        for name, value in self.counts.items():
            head, dot, rest = name.partition(".")
            if dot:
                shown.setdefault(head, {})[rest] = value
            else:
                shown[name] = value
        shown = {key: dict(sorted(value.items())) if isinstance(value, dict) else value for key, value in shown.items()}
        if self.first_bad_records:
            shown["first_bad_records"] = list(self.first_bad_records)
            shown["first_skipped"] = {reason: list(records) for reason, records in sorted(self.first_skipped.items())}
        return shown

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Stats:
        """The counters of a shown dict: its integer leaves, one level of groups deep; other values
        (paths, flags) are not counts, and `first_bad_records` and `first_skipped` come back as such."""
        groups = tuple(key for key, value in values.items() if isinstance(value, Mapping) and key != "first_skipped")
        stats = cls(groups=groups)
        for key, value in values.items():
            if key == "first_skipped":
                continue
            for name, count in value.items() if isinstance(value, Mapping) else [("", value)]:
                if isinstance(count, int) and not isinstance(count, bool):
                    stats.update(f"{key}.{name}" if name else key, count)
        stats.first_bad_records = list(values.get("first_bad_records") or [])[:KEPT_BAD_RECORDS]
        stats.first_skipped = {
            reason: list(records)[:KEPT_BAD_RECORDS] for reason, records in (values.get("first_skipped") or {}).items()
        }
        return stats

    @classmethod
    def total(cls, results: Iterable[Mapping[str, Any]]) -> Stats:
        """The sum of per-file or per-task results."""
        summed = cls()
        for result in results:
            summed.merge(cls.from_dict(result))
        return summed
