"""Every tinylm flow as a deployment of one serving process, so each can be triggered from the Prefect UI.

`deployments/serve.py` at the repository root is the entry point that runs `main`;
the deployments live here, inside the package, so tests and the command line import
them like any other module. Unlike the work-pool deployments of prefect.yaml, serving
needs no pool and no worker.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from tinylm.config import PipelineConfig, RefreshConfig, load_yaml
from tinylm.flows.chat_data import chat_data_flow
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.evaluate import eval_flow
from tinylm.flows.pipeline import pipeline_flow
from tinylm.flows.refresh import refresh_flow
from tinylm.flows.shards import shards_flow
from tinylm.flows.tokenizer import tokenizer_flow
from tinylm.flows.train import train_flow
from tinylm.flows.tuning import distill_flow, dpo_flow, grpo_flow, merge_flow

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
# When the refresh deployment looks in its inbox; override with TINYLM_REFRESH_CRON.
REFRESH_CRON = os.environ.get("TINYLM_REFRESH_CRON", "0 3 * * *")


def build_deployments() -> list[RunnerDeployment]:
    """The same deployments as prefect.yaml. The pipeline's form is pre-filled with the demo config, and the
    refresh's with the same workspace, corpus, shards and training settings: its scheduled runs, which carry no
    parameters, continue what the pipeline built (a model trained with those settings)."""
    demo = load_yaml(DEMO_CONFIG, PipelineConfig) if DEMO_CONFIG.exists() else PipelineConfig()
    refresh = RefreshConfig(
        workspace=demo.workspace, dedup_index=demo.dedup_index, corpus=demo.corpus, shards=demo.shards, train=demo.train
    )
    return [
        pipeline_flow.to_deployment(
            name="pipeline", parameters={"config": demo.model_dump(mode="json")}, tags=["tinylm"]
        ),
        corpus_flow.to_deployment(name="corpus", tags=["tinylm"]),
        tokenizer_flow.to_deployment(name="tokenizer", tags=["tinylm"]),
        shards_flow.to_deployment(name="shards", tags=["tinylm"]),
        train_flow.to_deployment(name="train", tags=["tinylm"]),
        chat_data_flow.to_deployment(name="chat-data", tags=["tinylm"]),
        dpo_flow.to_deployment(name="dpo", tags=["tinylm"]),
        grpo_flow.to_deployment(name="grpo", tags=["tinylm"]),
        distill_flow.to_deployment(name="distill", tags=["tinylm"]),
        merge_flow.to_deployment(name="merge", tags=["tinylm"]),
        eval_flow.to_deployment(name="eval", tags=["tinylm"]),
        refresh_flow.to_deployment(
            name="refresh", cron=REFRESH_CRON, parameters={"config": refresh.model_dump(mode="json")}, tags=["tinylm"]
        ),
    ]


def main() -> None:
    """Serve until stopped. Schedules stay active on exit (a restarted server picks up the runs it missed);
    Prefect's pausing them on shutdown also hung on SIGTERM, the signal service managers stop a process with."""
    serve(*build_deployments(), limit=1, pause_on_shutdown=False)


if __name__ == "__main__":
    main()
