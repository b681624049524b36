"""corpus flow: raw files to a cleaned, deduplicated Document parquet corpus."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

from tinylm.config import CorpusConfig
from tinylm.corpus.extraction import input_files
from tinylm.flows.dedup import clean_and_deduplicate, corpus_key, corpus_stats, rule_code, staged_parts
from tinylm.flows.extract import run_extract
from tinylm.flows.report import report_reused, report_stage, run_name
from tinylm.flows.runners import shared_cluster
from tinylm.storage.documents import CorpusManifest, publish_parts
from tinylm.storage.manifest import content_hashes, fingerprint, finished_output


@flow(
    name="corpus",
    description="Extract, convert, filter and deduplicate raw files into Document parquet.",
    flow_run_name=run_name("corpus", "output"),
)
def corpus_flow(
    inputs: list[str],
    output: str = "workspace/corpus/default",
    config: CorpusConfig = CorpusConfig(),
    index: str | None = None,
    workspace: str = "workspace",
    allow_empty: bool = False,
) -> dict:
    """Extract (a subflow, units in parallel), convert and filter each unit's output in parallel, then deduplicate.

    With `index`, documents are also deduplicated against every other corpus indexed before, and the kept ones
    replace this corpus's earlier entries there. The new parts replace the folder's old ones only once the stage
    has succeeded: a run that fails, or would keep no document, leaves the previous corpus as it was. Stats go to
    the manifest, a Prefect table and an MLflow run in `workspace`'s store (or MLFLOW_TRACKING_URI).

    Args:
        inputs: raw corpus files or directories (relative: to where the serving process started)
        output: directory of the corpus parquet parts
        config: how files become documents and which documents are kept
        index: directory of the persistent dedup index; empty to deduplicate this corpus alone
        workspace: home of the MLflow store and checkpoints (relative: to where the serving process started)
        allow_empty: finish with an empty corpus when dedup removes every document, instead of failing
    """
    started = time.time()
    inputs = input_files(inputs)
    hashes = content_hashes(inputs)
    expected = fingerprint("corpus", config.computing(), hashes | rule_code(config.filters))
    if (done := finished_output(output, expected, CorpusManifest)) is not None:
        return done.fields() | report_reused("corpus", output, workspace)
    extract_dir = Path(output) / "_work" / "extract"
    with shared_cluster(config.runner, config.extract.workers) as runner:
        extracted = run_extract(inputs, str(extract_dir), config.extract, runner)
        files = [str(extract_dir / name) for name in extracted.files]
        on_cluster = config.model_copy(update={"runner": runner})
        corpus = corpus_key(output, workspace, expected)
        cleaned, deduped = clean_and_deduplicate(files, output, on_cluster, index, corpus, allow_empty)
    stats = corpus_stats(extracted.stats, cleaned, deduped)
    manifest = CorpusManifest(
        stage="corpus",
        fingerprint=expected,
        inputs=hashes,
        parts=deduped["parts"],
        stats=stats,
        config=config.model_dump(mode="json"),
    )
    manifest = publish_parts(staged_parts(output), output, manifest)
    run_id = report_stage(
        "corpus", stats, {"inputs": inputs, "output": output, **config.model_dump(mode="json")}, workspace, started
    )
    return manifest.fields() | {"reused": False, "run_id": run_id}
