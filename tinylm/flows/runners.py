"""Parallelism for the data stages: Prefect task runs in threads, their work in processes (or on Dask).

Prefect's own process-pool runner runs the whole task engine in every worker, which costs
most of a core per worker (docs/benchmarks.md, "Measured choices"). Here task runs stay in
threads of the flow's process (so states, logs and retries are Prefect's as usual), and each
hands its pure function to a plain process pool.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tinylm.config import RunnerConfig


def worker_count(workers: int) -> int:
    """`workers`, with 0 meaning one per CPU."""
    return workers or os.cpu_count() or 1


def thread_runner(workers: int) -> ThreadPoolTaskRunner:
    """As many concurrent task runs as there are worker processes, so UI states stay truthful."""
    return ThreadPoolTaskRunner(max_workers=worker_count(workers))


@contextmanager
def process_pool(workers: int, tasks: int) -> Iterator[Executor | None]:
    """A spawn-based process pool of `workers`, never more than `tasks`; None means: work in the task's own thread.

    One task (a small file) skips the pool: spawning a process that imports the stage costs seconds.
    """
    count = min(worker_count(workers), tasks)
    if count <= 1:
        yield None
        return
    with ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def task_runner(runner: RunnerConfig, workers: int) -> TaskRunner:
    """Threads (the default), or Dask or Ray: the given cluster, or a local one of `workers` processes."""
    if runner.kind == "threads":
        return thread_runner(workers)
    if runner.kind == "ray":
        with _extra("ray"):
            from prefect_ray import RayTaskRunner

        if runner.ray_address:  # a cluster's own resources: ray.init refuses num_cpus when it connects
            return RayTaskRunner(address=runner.ray_address)
        return RayTaskRunner(init_kwargs={"num_cpus": worker_count(workers), "include_dashboard": False})
    with _extra("dask"):
        from prefect_dask import DaskTaskRunner

    if runner.dask_address:
        return DaskTaskRunner(address=runner.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": worker_count(workers), "threads_per_worker": 1, "processes": True}
    )


@contextmanager
def _extra(name: str) -> Iterator[None]:
    """An optional runner's package, or an error that says how to install it (`make setup` installs the runtime
    only)."""
    try:
        yield
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"runner kind {name!r} needs the {name} extra: .venv/bin/pip install -e '.[{name}]'"
        ) from error


@contextmanager
def shared_cluster(runner: RunnerConfig, workers: int) -> Iterator[RunnerConfig]:
    """One local cluster for all of a flow's subflows, and the runner settings that reach it.

    A Dask or Ray task runner without an address starts a cluster of its own and stops it
    when its subflow ends: the corpus flow (extraction, cleaning, staged dedup) paid three
    starts, about 15 s each on two cores (bench/datatrove.py). Ray's task runner uses an
    instance or connection this process already holds, and Dask's takes the scheduler's
    address. A local cluster runs without a dashboard: it lives for one run, and a second run
    would fight over its port.
    """
    if runner.kind == "dask" and not runner.dask_address:
        with _extra("dask"):
            from distributed import LocalCluster

        count = worker_count(workers)
        with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            yield runner.model_copy(update={"dask_address": cluster.scheduler_address})
        return
    if runner.kind == "ray":
        with _extra("ray"):
            import ray

        if not ray.is_initialized():
            if runner.ray_address:  # also `auto`, which Prefect's runner would take for a local instance
                ray.init(address=runner.ray_address)
            else:
                ray.init(num_cpus=worker_count(workers), include_dashboard=False)
            try:
                yield runner
            finally:
                ray.shutdown()
            return
    yield runner


def local_pool_workers(runner: RunnerConfig, workers: int) -> int:
    """Processes of the local pool behind thread task runs; on Dask or Ray the workers are the parallelism, so none."""
    return workers if runner.kind == "threads" else 1
