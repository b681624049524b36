"""Every registered flow (tinylm/registry.py) as a deployment of one serving process, so each can be triggered from the
Prefect UI; and prefect.yaml, the same deployments on a work pool, written from the same registry.

`deployments/serve.py` at the repository root is the entry point that runs `main`; the deployments live here, inside
the package, so tests and the command line import them like any other module. Unlike the work-pool deployments of
prefect.yaml, serving needs no pool and no worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import prefect
from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from tinylm.config import PipelineConfig, RefreshConfig, load_yaml
from tinylm.registry import Command, commands, load

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
TAGS = ["tinylm"]
PREFECT_YAML_HEADER = """\
# One deployment per flow, on a process work pool. From the repository root:
#   prefect work-pool create tinylm --type process     (once)
#   prefect deploy --all
#   prefect worker start --pool tinylm
# then trigger any of them from the Prefect UI; each renders its config as a form. Each deployment's
# description is its flow's own (the `description` of its @flow), as for the served deployments.
# (Or skip the pool and worker: `python deployments/serve.py` serves them all.)
# Written by scripts/prefect_yaml.py from tinylm/registry.py; do not edit by hand.
"""


def deployed() -> list[Command]:
    return [entry for entry in commands() if entry.flow and entry.deployed]


def build_deployments() -> list[RunnerDeployment]:
    """A deployment per registered flow, in the registry's order, its form pre-filled where the entry says how."""
    return [
        load(entry.flow).to_deployment(
            name=entry.name, cron=_cron(entry), parameters=load(entry.form)() if entry.form else None, tags=TAGS
        )
        for entry in deployed()
    ]


def _cron(entry: Command) -> str | None:
    """The entry's schedule, or TINYLM_<NAME>_CRON where this server's operator set one (TINYLM_REFRESH_CRON)."""
    variable = f"TINYLM_{entry.name.upper().replace('-', '_')}_CRON"
    return os.environ.get(variable, entry.schedule) if entry.schedule else None


def pipeline_form() -> dict[str, Any]:
    """The pipeline's form, pre-filled with the demo config."""
    return {"config": _demo().model_dump(mode="json")}


def refresh_form() -> dict[str, Any]:
    """The refresh's form, with the demo's workspace, corpus, shards and training settings: its scheduled runs, which
    carry no parameters, continue what the pipeline built (a model trained with those settings)."""
    demo = _demo()
    refresh = RefreshConfig(
        workspace=demo.workspace, dedup_index=demo.dedup_index, corpus=demo.corpus, shards=demo.shards, train=demo.train
    )
    return {"config": refresh.model_dump(mode="json")}


def _demo() -> PipelineConfig:
    return load_yaml(DEMO_CONFIG, PipelineConfig) if DEMO_CONFIG.exists() else PipelineConfig()


def prefect_yaml() -> str:
    """prefect.yaml's text: each deployed flow's entrypoint as a file path, on the `tinylm` process pool."""
    lines = [PREFECT_YAML_HEADER + "name: tinylm", f"prefect-version: {prefect.__version__}", "", "build: null"]
    lines += ["push: null", "", "deployments:"]
    for entry in deployed():
        module, _, attribute = entry.flow.rpartition(":")
        lines += [f"  - name: {entry.name}", f"    entrypoint: {module.replace('.', '/')}.py:{attribute}"]
        lines += ["    tags: [tinylm]"]
        if entry.schedule:
            lines += ["    schedules:", f'      - cron: "{entry.schedule}"']
        lines += ["    work_pool:", "      name: tinylm"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Serve until stopped. Schedules stay active on exit (a restarted server picks up the runs it missed);
    Prefect's pausing them on shutdown also hung on SIGTERM, the signal service managers stop a process with."""
    serve(*build_deployments(), limit=1, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
