"""extract flow: raw files to Document parquet, units of work in parallel processes."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from tinylm.config import ExtractConfig
from tinylm.storage.manifest import content_hashes, fingerprint, is_complete, read_manifest, write_manifest
from tinylm.tasks.extract import extract_unit_task, plan_units
from tinylm.tasks.report import extract_stats, publish_stats


def task_runner_for(workers: int) -> TaskRunner:
    """Processes for real parallelism (wikitext parsing holds the GIL); one worker stays in-process."""
    count = workers or os.cpu_count() or 1
    return ThreadPoolTaskRunner(max_workers=1) if count == 1 else ProcessPoolTaskRunner(max_workers=count)


@flow(name="extract")
def extract_flow(inputs: list[str], output: str = "workspace/extracted/default", config: ExtractConfig = ExtractConfig()) -> dict:
    """Plan units (files, or byte ranges of multistream dumps), extract them in parallel, list them in order."""
    hashes = content_hashes(inputs)
    expected = fingerprint("extract", config.model_dump(exclude={"workers"}), hashes)
    if is_complete(output, expected):
        return read_manifest(output)
    units = plan_units(inputs, hashes, config)
    futures = [extract_unit_task.submit(unit, output, config) for unit in units]
    results = [future.result() for future in futures]
    stats = extract_stats(results)
    manifest = {
        "stage": "extract",
        "fingerprint": expected,
        "inputs": hashes,
        "files": [Path(result["output"]).name for result in results],
        "stats": stats,
        "config": config.model_dump(mode="json"),
    }
    write_manifest(output, manifest)
    publish_stats("extract", stats)
    return manifest


def run_extract(inputs: list[str], output: str, config: ExtractConfig) -> dict:
    """The extract flow on the task runner its `workers` setting asks for."""
    return extract_flow.with_options(task_runner=task_runner_for(config.workers))(inputs, output, config)
