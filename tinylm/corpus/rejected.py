"""The documents a run dropped, kept where a user can read them: `rejected/<reason>/<part>.parquet`.

A count says how many documents a filter cost; the documents say which, and whether the rule was right (real
MiniMind pretraining lines are 15 characters long, and `too_short` drops them). This is datatrove's exclusion
writer, in the Document schema, so any tinylm reader (or polars) opens them.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from tinylm.storage.documents import Document, DocumentWriter

REJECTED = "rejected"


def rejected_path(root: Path, reason: str, name: str) -> Path:
    return root / reason / f"{name}.parquet"


class RejectedWriters:
    """One Document file per drop reason, opened at the reason's first document; with no root, nothing is kept.

    All of them are committed when the block ends without an error, and none otherwise. Enter this block inside
    the one that writes the kept documents, so the rejected files are down before the kept file that marks the
    work done: a run killed between the two redoes the work and rewrites them.
    """

    def __init__(self, root: Path | None, name: str) -> None:
        self.root, self.name = root, name
        self.writers: dict[str, DocumentWriter] = {}

    def write(self, reason: str, document: Document) -> None:
        if self.root is None:
            return
        if reason not in self.writers:
            self.writers[reason] = DocumentWriter(rejected_path(self.root, reason, self.name))
        self.writers[reason].write(document)

    @property
    def paths(self) -> dict[str, str]:
        return {reason: str(writer.path) for reason, writer in self.writers.items()}

    def __enter__(self) -> RejectedWriters:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for writer in self.writers.values():
            if kind is None:
                writer.close()
            else:
                writer.abort()


def prune_rejected(root: Path, produced: set[str]) -> None:
    """Remove the rejected files this run did not write (an earlier run's, under other settings), so the folder
    holds exactly what this run dropped."""
    if not root.is_dir():
        return
    for path in root.glob("*/*.parquet"):
        if str(path) not in produced:
            path.unlink()
    for folder in root.iterdir():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
