"""extract flow: raw files to Document parquet, one task run per unit, the work in a process pool."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ExtractConfig, RunnerConfig
from tinylm.corpus.extraction import ExtractUnit, extract_unit, input_files, plan_units
from tinylm.corpus.readers.base import SUSPECT_SHARE, suspect_share
from tinylm.flows.report import StageProgress, publish_stats, run_name
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.flows.runners import local_pool_workers, process_pool, task_runner
from tinylm.stats import Stats
from tinylm.storage.documents import ExtractManifest
from tinylm.storage.manifest import content_hashes, fingerprint, finished_output, write_manifest


@task(name="extract", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
def extract_unit_task(unit: ExtractUnit, output_dir: str, config: ExtractConfig, pool: Executor | None = None) -> dict:
    """One unit as a Prefect task run; the work goes to `pool` when the flow has one."""
    result = (
        pool.submit(extract_unit, unit, output_dir, config).result() if pool else extract_unit(unit, output_dir, config)
    )
    if suspect_share(result) > SUSPECT_SHARE:
        get_run_logger().warning(
            "%s: %.0f%% of its text is NULs or undecodable bytes: it is probably not UTF-8 "
            "(UTF-16 and UTF-32 files need a byte-order mark); convert it, e.g. iconv -f GB18030 -t UTF-8",
            unit.path,
            100 * suspect_share(result),
        )
    for encoding in result.get("read_as", {}):
        get_run_logger().warning(
            "%s is not UTF-8: read as %s, the Chinese encoding its bytes are coherent in", unit.path, encoding
        )
    if result.get("skipped", {}).get("empty_file"):
        get_run_logger().warning("%s holds no text: nothing was extracted from it", unit.path)
    elif any(result.get("skipped", {}).values()):
        get_run_logger().warning("%s: skipped %s", unit.path, Stats.from_dict(result).skipped_summary())
    return result


@flow(name="extract", flow_run_name=run_name("extract", "output"))
def extract_flow(
    inputs: list[str],
    output: str = "workspace/extracted/default",
    config: ExtractConfig = ExtractConfig(),
    runner: RunnerConfig = RunnerConfig(),
) -> ExtractManifest:
    """Plan units (files, or byte ranges of multistream dumps), extract them in parallel, list them in order."""
    inputs = input_files(inputs)
    hashes = content_hashes(inputs)
    expected = fingerprint("extract", config.model_dump(exclude={"workers"}), hashes)
    if (done := finished_output(output, expected, ExtractManifest)) is not None:
        return done
    units = plan_units(inputs, hashes, config)
    with process_pool(local_pool_workers(runner, config.workers), len(units)) as pool:
        progress = StageProgress("extract", "units extracted, in percent")
        futures = [extract_unit_task.submit(unit, output, config, pool) for unit in units]
        results = []
        for future in futures:
            results.append(future.result())
            progress(len(results) / len(futures))
    stats = {"units": len(results)} | Stats.total(results).as_dict()
    manifest = ExtractManifest(
        stage="extract",
        fingerprint=expected,
        inputs=hashes,
        files=[Path(result["output"]).name for result in results],
        stats=stats,
        config=config.model_dump(mode="json"),
    )
    manifest = write_manifest(output, manifest)
    publish_stats("extract", stats)
    return manifest


def run_extract(
    inputs: list[str], output: str, config: ExtractConfig, runner: RunnerConfig = RunnerConfig()
) -> ExtractManifest:
    """The extract flow on the chosen task runner, as many concurrent task runs as `workers` asks for."""
    return extract_flow.with_options(task_runner=task_runner(runner, config.workers))(inputs, output, config, runner)
