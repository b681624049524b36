"""Clean stage: language detection, traditional-to-simplified conversion, quality filters.

Works on one extracted parquet file at a time, so files are cleaned in parallel tasks.
"""

from __future__ import annotations

from pathlib import Path

from tinylm.config import ConvertConfig, FilterConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.convert import convert_texts, make_converter, simplified
from tinylm.corpus.quality import quality_failure
from tinylm.stats import Stats
from tinylm.storage.documents import DocumentWriter, read_batches, stored_stats
from tinylm.storage.manifest import fingerprint


def clean_file(source: str | Path, output_dir: str | Path, convert: ConvertConfig, filters: FilterConfig) -> dict:
    """Convert (text and title) and filter one Document parquet file; returns counts by outcome and drop reason."""
    source, output_dir = Path(source), Path(output_dir)
    key = fingerprint("clean", {"convert": convert, "filters": filters}, {"source": source.name})[:16]
    target = output_dir / f"{source.stem}.{key}.parquet"
    result = {"input": str(source), "output": str(target)}
    if target.exists():
        return result | stored_stats(target) | {"reused": True}
    stats = Stats("documents", "converted", "chat_marked", "kept", groups=("dropped",))
    to_simplified = make_converter(convert)
    with DocumentWriter(target, stats) as writer:
        for batch in read_batches(source, 1024):
            documents = batch.to_pylist()
            originals = [d["text"] for d in documents]
            texts, langs, changed = convert_texts(
                originals,
                [d["lang"] for d in documents],
                to_simplified,
                convert.cjk_threshold,
                list(map(without_chat_markers, originals)),
            )
            stats.update("documents", len(documents))
            stats.update("converted", changed)
            for document, text, lang in zip(documents, texts, langs):
                # Conversion leaves the ASCII markers as they were, so stripping after it equals
                # converting the stripped text.
                judged = without_chat_markers(text)
                stats.update("chat_marked", judged is not text)
                reason = quality_failure(judged, lang, filters)
                if reason:
                    stats.drop(reason)
                    continue
                stored = judged if filters.chat_markers == "strip" else text
                writer.write(
                    {**document, "text": stored, "lang": lang, "title": simplified(document["title"], to_simplified)}
                )
                stats.update("kept")
    return result | stats.as_dict() | {"reused": False}
