"""dedup flow: quality filters and deduplication alone, on Document parquet files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ConvertConfig, CorpusConfig, DedupConfig, FilterConfig
from tinylm.corpus.clean import clean_file
from tinylm.corpus.decontamination import EvaluationNgrams
from tinylm.corpus.dedup import staged
from tinylm.corpus.dedup.deduplicate import deduplicate_files
from tinylm.corpus.dedup.index import CorpusKey
from tinylm.corpus.quality import quality_rules, user_rule_files
from tinylm.corpus.rejected import REJECTED, prune_rejected
from tinylm.flows.report import report_reused, report_stage, run_name
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.flows.runners import shared_cluster, task_runner
from tinylm.stats import Stats
from tinylm.storage.documents import CorpusManifest, publish_parts
from tinylm.storage.manifest import content_hashes, fingerprint, finished_output, read_manifest


def rule_code(filters: FilterConfig) -> dict[str, str]:
    """The content hashes of the user rules `filters` names, after building their chain once: a rule that cannot load,
    or refuses its settings, fails the stage before any work, and an edited rule changes the stage's fingerprint."""
    quality_rules(filters)
    return content_hashes(user_rule_files(filters))


clean_file_task = task(clean_file, name="clean-file", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
deduplicate_files_task = task(deduplicate_files, name="deduplicate", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
_DISTRIBUTED_STAGES = {
    stage: task(stage, name=stage.__name__.replace("_", "-"), cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
    for stage in (
        staged.sign_source,
        staged.exact_partition,
        staged.settle_exact,
        staged.band_pairs,
        staged.near_duplicates,
        staged.write_source,
    )
}


def _submitted(stage: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """The FanOut of the distributed dedup: one task run per call, on the flow's task runner."""
    futures = [_DISTRIBUTED_STAGES[stage].submit(*call) for call in calls]
    return [future.result() for future in futures]


@flow(name="distributed-dedup", flow_run_name=run_name("distributed-dedup", "output"))
def distributed_dedup_flow(
    sources: list[str],
    output: str,
    config: DedupConfig = DedupConfig(),
    index: str | None = None,
    corpus: CorpusKey = CorpusKey(""),
    rejected: str | None = None,
    allow_empty: bool = False,
) -> dict:
    """Dedup as task runs on a Dask or Ray cluster: signatures where the files are, exact keys by range, band keys
    by band, one clustering task, parts written where the files are (`corpus/dedup/staged.py`)."""
    return staged.deduplicate_in_stages(sources, output, config, _submitted, index, corpus, rejected, allow_empty)


def corpus_key(output: str, workspace: str, run: str) -> CorpusKey:
    """The key the dedup index files this corpus under: its folder, relative to the workspace when inside it. The
    fingerprints of this run and of the version the folder holds name its entries in an index an older tinylm
    wrote."""
    folder, home = Path(output).resolve(), Path(workspace).resolve()
    name = folder.relative_to(home).as_posix() if folder.is_relative_to(home) else folder.as_posix()
    try:
        found = read_manifest(output)
        previous = found.fingerprint if found is not None else None
    except ValueError:
        previous = None
    return CorpusKey(name, tuple(dict.fromkeys(filter(None, (run, previous)))))


def staged_parts(output: str) -> str:
    """Where dedup writes a corpus's new parts; they replace the folder's own once the whole stage has succeeded."""
    return str(Path(output) / "_work" / "dedup")


def clean_and_deduplicate(
    files: list[str], output: str, config: CorpusConfig, index: str | None, corpus: CorpusKey, allow_empty: bool
) -> tuple[list[dict], dict]:
    """Convert and filter each file in a parallel task, then deduplicate all of them in order: in one task on
    threads, spread over the cluster on Dask or Ray.

    Called from inside a flow (`corpus` or `dedup`), which owns the manifest and publishes the parts written to
    `staged_parts(output)`; `corpus` names the corpus in the persistent `index`, whose earlier entries it replaces.
    A corpus dedup would empty fails, unless `allow_empty` (a refresh whose new files were all seen before).
    """
    work = str(Path(output) / "_work" / "clean")
    if config.filters.decontaminate:
        evaluation = EvaluationNgrams(config.filters.decontaminate, config.filters.decontamination_ngram)
        for benchmark, count in sorted(evaluation.unmatchable.items()):
            get_run_logger().warning(
                "decontamination: %d questions of %s are shorter than %d units and cannot be matched",
                count,
                benchmark,
                config.filters.decontamination_ngram,
            )
    rejected = str(Path(output) / REJECTED) if config.keep_rejected else None
    with shared_cluster(config.runner, config.extract.workers) as runner:
        clean = clean_flow.with_options(task_runner=task_runner(runner, config.extract.workers))
        cleaned = clean(files, work, config.convert, config.filters, rejected)
        refuse_an_empty_corpus(cleaned)
        sources = [result["output"] for result in cleaned]
        parts = staged_parts(output)
        if runner.kind == "threads":
            deduped = deduplicate_files_task(sources, parts, config.dedup, index, corpus, rejected, allow_empty)
        else:
            spread = distributed_dedup_flow.with_options(task_runner=task_runner(runner, config.extract.workers))
            deduped = spread(sources, parts, config.dedup, index, corpus, rejected, allow_empty)
    produced = {path for result in cleaned for path in result["rejected"].values()}
    produced |= {path for paths in deduped["rejected"].values() for path in paths}
    prune_rejected(Path(output) / REJECTED, produced)
    return cleaned, deduped


def refuse_an_empty_corpus(cleaned: list[dict]) -> None:
    """A corpus the filters emptied is an error, not a green run with nothing in it: the line says which rules took
    the documents (a wrong `filters.languages` code, `min_chars` above every line...)."""
    cleaning = Stats.total(cleaned)
    read = cleaning["documents"]
    if read and not cleaning["kept"]:
        reasons = sorted(cleaning.group("dropped").items(), key=lambda item: -item[1])
        named = ", ".join(f"{reason} {count}" for reason, count in reasons[:3])
        raise ValueError(
            f"the filters dropped all {read} documents ({named}): loosen those settings, or check the inputs "
            "(keep_rejected: true keeps what was dropped)"
        )


def corpus_stats(extracted: dict, cleaned: list[dict], deduped: dict) -> dict:
    """The corpus's counts from its steps: what extraction read, what the filters dropped, what dedup removed."""
    cleaning = Stats.total(cleaned)
    filtered = cleaning.group("dropped")
    return {
        "extracted": extracted,
        "converted": cleaning["converted"],
        "filtered": filtered,
        "judged_as": cleaning.group("judged_as"),
        "contaminated_by": cleaning.group("contaminated_by"),
        "exact_duplicates": deduped["exact_duplicates"],
        "exact_duplicates_of_index": deduped["exact_duplicates_of_index"],
        "near_duplicates": deduped["near_duplicates"],
        "near_duplicates_of_index": deduped["near_duplicates_of_index"],
        "near_duplicate_clusters": deduped.get("near_duplicate_clusters", {}),
        "documents_in": deduped["documents"] + sum(filtered.values()),
        "kept": deduped["kept"],
    }


@flow(name="clean", flow_run_name=run_name("clean", "work"))
def clean_flow(
    files: list[str],
    work: str,
    convert: ConvertConfig = ConvertConfig(),
    filters: FilterConfig = FilterConfig(),
    rejected: str | None = None,
) -> list[dict]:
    """Convert and filter each Document file in its own task run, on the corpus config's task runner; with
    `rejected`, the dropped documents go to `rejected/<reason>/`."""
    futures = [clean_file_task.submit(path, work, convert, filters, rejected) for path in files]
    return [future.result() for future in futures]


def document_files(directory: str) -> list[str]:
    """The Document parquet files of a directory, in name order (partial extractions excluded)."""
    files = sorted(
        str(path) for path in Path(directory).glob("*.parquet") if not path.name.endswith(".partial.parquet")
    )
    if not files:
        raise FileNotFoundError(f"{directory} holds no Document parquet files")
    return files


@flow(name="dedup", flow_run_name=run_name("dedup", "output"))
def dedup_flow(
    input: str,
    output: str,
    config: CorpusConfig = CorpusConfig(),
    index: str | None = None,
    workspace: str = "workspace",
    allow_empty: bool = False,
) -> dict:
    """Filters and dedup on Document parquet; with `index`, also against every other corpus indexed before."""
    started = time.time()
    files = document_files(input)
    hashes = content_hashes(files)
    expected = fingerprint("dedup", config.computing("extract"), hashes | rule_code(config.filters))
    if (done := finished_output(output, expected, CorpusManifest)) is not None:
        return done.fields() | report_reused("dedup", output, workspace)
    corpus = corpus_key(output, workspace, expected)
    cleaned, deduped = clean_and_deduplicate(files, output, config, index, corpus, allow_empty)
    stats = corpus_stats({}, cleaned, deduped)
    manifest = CorpusManifest(stage="dedup", fingerprint=expected, inputs=hashes, parts=deduped["parts"], stats=stats)
    manifest = publish_parts(staged_parts(output), output, manifest)
    report_stage(
        "dedup", stats, {"input": input, "output": output, **config.model_dump(mode="json")}, workspace, started
    )
    return manifest.fields() | {"reused": False}
