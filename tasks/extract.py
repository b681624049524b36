"""Extract stage as Prefect tasks: one task run per unit, the work optionally in a process pool."""

from __future__ import annotations

from concurrent.futures import Executor

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ExtractConfig
from tinylm.tasks.extraction import ExtractUnit, extract_unit
from tinylm.tasks.retry_policy import DATA_TASK_OPTIONS


@task(name="extract", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
def extract_unit_task(unit: ExtractUnit, output_dir: str, config: ExtractConfig, pool: Executor | None = None) -> dict:
    """One unit as a Prefect task run; the work goes to `pool` when the flow has one."""
    result = pool.submit(extract_unit, unit, output_dir, config).result() if pool else extract_unit(unit, output_dir, config)
    if result.get("first_bad_records"):
        get_run_logger().warning(
            "%s: %s skipped; first bad records %s", unit.path, result["skipped"], result["first_bad_records"]
        )
    return result
