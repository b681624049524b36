"""A bilingual Document corpus from the shared samples, for the tokenizer and shards benchmarks.

Not a benchmark itself (`make bench` skips `_*.py`).
"""

from __future__ import annotations

from pathlib import Path

from tinylm.config import ExtractConfig
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats
from tinylm.storage.documents import CorpusManifest, make_document, write_documents
from tinylm.storage.manifest import write_manifest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_bilingual_corpus(directory: Path, copies: int) -> int:
    """Zuozhuan lines (zh) and enwiki articles (en), `copies` times under distinct ids; returns UTF-8 bytes written."""
    lines = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    articles = [
        a["text"] for a in read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), Stats())
    ]
    for copy in range(copies):
        write_documents(
            directory / f"part-{2 * copy:05d}.parquet",
            [make_document(f"zuozhuan-{copy}", i, t, lang="zh") for i, t in enumerate(lines)],
        )
        write_documents(
            directory / f"part-{2 * copy + 1:05d}.parquet",
            [make_document(f"enwiki-{copy}", i, t, lang="en") for i, t in enumerate(articles)],
        )
    write_manifest(directory, CorpusManifest(stage="corpus", fingerprint=f"bench-{copies}"))
    return copies * sum(len(text.encode("utf-8")) for text in lines + articles)
