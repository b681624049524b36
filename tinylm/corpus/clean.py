"""Clean stage: language detection, traditional-to-simplified conversion, quality filters.

Works on one extracted parquet file at a time, so files are cleaned in parallel tasks.
"""

from __future__ import annotations

from pathlib import Path

from tinylm.config import ConvertConfig, FilterConfig
from tinylm.corpus.chat_markers import without_chat_markers
from tinylm.corpus.convert import SourceConverters, convert_texts, simplified
from tinylm.corpus.decontamination import EvaluationNgrams, source_files
from tinylm.corpus.quality import quality_rules, user_rule_files
from tinylm.corpus.rejected import RejectedWriters, rejected_path
from tinylm.corpus.rules import Judged, RuleChain
from tinylm.stats import Stats
from tinylm.storage.documents import DocumentWriter, read_batches, stored_stats
from tinylm.storage.manifest import content_hashes, fingerprint


def clean_file(
    source: str | Path,
    output_dir: str | Path,
    convert: ConvertConfig,
    filters: FilterConfig,
    rejected_dir: str | Path | None = None,
) -> dict:
    """Convert (text and title) and filter one Document parquet file; returns counts by outcome and drop reason.

    With `rejected_dir`, each dropped document goes to `rejected_dir/<reason>/`, converted as it was judged.
    """
    source, output_dir = Path(source), Path(output_dir)
    rejected_root = None if rejected_dir is None else Path(rejected_dir)
    settings = {"convert": convert, "filters": filters, "keep_rejected": rejected_root is not None}
    evaluation_files = [str(path) for entry in filters.decontaminate for path in source_files(Path(entry))]
    # A user rule's code is part of what the output depends on: an edited rule re-runs the filters.
    rule_files = user_rule_files(filters)
    key = fingerprint("clean", settings, {"source": source.name} | content_hashes(evaluation_files + rule_files))[:16]
    target = output_dir / f"{source.stem}.{key}.parquet"
    result = {"input": str(source), "output": str(target)}
    if target.exists():
        stored = stored_stats(target)
        kept = {} if rejected_root is None else stored.get("dropped", {})
        rejected = {reason: str(rejected_path(rejected_root, reason, target.stem)) for reason in kept}
        return result | stored | {"reused": True, "rejected": rejected}
    groups = ("dropped", "judged_as", "contaminated_by", "languages", "converted_with", "converted_variant")
    stats = Stats("documents", "converted", "chat_marked", "kept", groups=groups)
    evaluation = EvaluationNgrams(filters.decontaminate, filters.decontamination_ngram)
    chains = SourceRules(filters)
    converters = SourceConverters(convert)

    with DocumentWriter(target, stats) as writer, RejectedWriters(rejected_root, target.stem) as rejected:
        for batch in read_batches(source, 1024):
            documents = batch.to_pylist()
            originals = [d["text"] for d in documents]
            chosen = [converters.for_source(d["source"]) for d in documents]
            texts, langs, conversions = convert_texts(
                originals,
                [d["lang"] for d in documents],
                chosen,
                convert.cjk_threshold,
                list(map(without_chat_markers, originals)),
                convert.language_id,
            )
            stats.update("documents", len(documents))
            # Conversion leaves the ASCII markers as they were, so stripping after it equals
            # converting the stripped text.
            judged = [without_chat_markers(text) for text in texts]
            reasons = _reasons(documents, judged, langs, filters, evaluation, chains, stats)
            for document, text, bare, lang, to_simplified, conversion, reason in zip(
                documents, texts, judged, langs, chosen, conversions, reasons
            ):
                if conversion is not None:
                    name, region = conversion
                    stats.update("converted")
                    stats.update(f"converted_with.{name}")
                    if region is not None:
                        stats.update(f"converted_variant.{region}")
                stats.update("chat_marked", bare is not text)
                stats.update(f"languages.{lang}")
                stored = bare if filters.chat_markers == "strip" else text
                converted = {**document, "text": stored, "lang": lang}
                if reason:
                    stats.drop(reason)
                    rejected.write(reason, converted)
                    continue
                writer.write(converted | {"title": simplified(document["title"], to_simplified)})
                stats.update("kept")
    return result | stats.as_dict() | {"reused": False, "rejected": rejected.paths}


class SourceRules:
    """The rule chain a document's source is judged by (its preset's), built once per source."""

    def __init__(self, filters: FilterConfig) -> None:
        self.filters = filters
        self._chains: dict[str, tuple[str, RuleChain]] = {}

    def for_source(self, source: str) -> tuple[str, RuleChain]:
        if source not in self._chains:
            preset, rules = self.filters.for_source(source)
            self._chains[source] = preset, quality_rules(rules)
        return self._chains[source]


def _reasons(
    documents: list[dict],
    judged: list[str],
    langs: list[str | None],
    filters: FilterConfig,
    evaluation: EvaluationNgrams,
    chains: SourceRules,
    stats: Stats,
) -> list[str | None]:
    """Each document's reason to be dropped, or None: another language, a benchmark's text, then the quality rules
    of its source's chain, judged a batch per source."""
    reasons: list[str | None] = [None] * len(documents)
    by_source: dict[str, list[int]] = {}
    for index, (document, text, lang) in enumerate(zip(documents, judged, langs)):
        stats.update(f"judged_as.{chains.for_source(document['source'])[0]}")
        if filters.languages and lang not in filters.languages:
            reasons[index] = "other_language"
        elif (benchmark := evaluation.benchmark_in(text)) is not None:
            stats.update(f"contaminated_by.{benchmark}")
            reasons[index] = "contaminated"
        else:
            by_source.setdefault(document["source"], []).append(index)
    for source, indices in by_source.items():
        found = chains.for_source(source)[1].judge([Judged(judged[index], langs[index]) for index in indices])
        for index, reason in zip(indices, found):
            reasons[index] = reason
    return reasons
