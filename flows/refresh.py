"""refresh flow: new corpus files in the inbox, deduplicated against everything before, into continued training.

Deployed with a daily cron schedule: drop files in the inbox and the model keeps
training. A refresh with nothing new reads the ledger, hashes only changed files, and
ends; two refreshes on one workspace take turns through a lock.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tinylm.config import RefreshConfig
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.shards import shards_flow
from tinylm.flows.train import train_flow
from tinylm.tasks.lineage import LINEAGE_TAG, log_loss_figure, newest_training_run
from tinylm.tasks.refresh import Ledger, batch_id, scan_inbox, stage_locally, workspace_lock
from tinylm.tasks.report import publish_stats


@flow(name="refresh")
def refresh_flow(config: RefreshConfig = RefreshConfig()) -> dict:
    workspace = Path(config.workspace)
    state = workspace / "refresh"
    with workspace_lock(state, config.lock_timeout_s):
        ledger = Ledger.load(state)
        new = scan_inbox(config.inbox, ledger)
        if not new:
            return {"new_files": 0, "run_id": None}
        batch = batch_id(new)
        corpus_dir, shards_dir = (str(workspace / stage / f"refresh-{batch}") for stage in ("corpus", "shards"))
        index = str(workspace / config.dedup_index) if config.dedup_index else None
        corpus = corpus_flow(stage_locally(new, state / "staging"), corpus_dir, config.corpus, index, config.workspace)
        run_id, lineage = None, list(ledger.runs)
        if corpus["stats"]["kept"]:
            shards_flow(corpus_dir, config.tokenizer, shards_dir, config.shards, config.workspace)
            base = lineage[-1] if lineage else config.base_run_id or newest_training_run(config.train.experiment, config.workspace)
            if base is None:
                raise ValueError("nothing to continue training from: run the pipeline first, or set base_run_id")
            lineage = lineage or [base]
            train = config.train.model_copy(update={"init_run_id": base, "resume_run_id": None, "run_name": f"refresh-{batch}"})
            run_id = train_flow(shards_dir, train, config.workspace, {LINEAGE_TAG: lineage[0], "tinylm.refresh": batch})["run_id"]
            lineage.append(run_id)
            log_loss_figure(run_id, lineage)
        ledger.runs = lineage
        ledger.record(new, batch)
    summary = {"new_files": len(new), "batch": batch, "documents_kept": corpus["stats"]["kept"], "run_id": run_id}
    publish_stats("refresh", summary | {"files": [item.name for item in new]})
    return summary | {"lineage": lineage}
