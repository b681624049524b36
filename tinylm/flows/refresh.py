"""refresh flow: new corpus files in the inbox, deduplicated against everything before, into continued training.

Deployed with a daily cron schedule: drop files in the inbox and the model keeps
training. A refresh with nothing new reads the ledger, hashes only changed files, and
ends; two refreshes on one workspace take turns through a lock.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tinylm.config import RefreshConfig
from tinylm.corpus.inbox import InboxFile, Ledger, batch_id, scan_inbox, stage_locally, workspace_lock
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.report import publish_stats
from tinylm.flows.shards import shards_flow
from tinylm.flows.train import train_flow
from tinylm.tracking.groups import run_group
from tinylm.tracking.lineage import LINEAGE_TAG, log_loss_figure, newest_training_run
from tinylm.tracking.store import run_link


@flow(name="refresh")
def refresh_flow(config: RefreshConfig = RefreshConfig()) -> dict:
    state = Path(config.workspace) / "refresh"
    with workspace_lock(state, config.lock_timeout_s):
        ledger = Ledger.load(state)
        new = scan_inbox(config.inbox, ledger)
        if not new:
            return {"new_files": 0, "run_id": None}
        batch = batch_id(new)
        with run_group("refresh", config.workspace, batch, config.train.experiment, {"tinylm.refresh": batch}, config.train.restart):
            kept, run_id, lineage = _corpus_shards_and_training(config, ledger.runs, new, batch)
        ledger.runs = lineage
        ledger.record(new, batch)
    summary = {"new_files": len(new), "batch": batch, "documents_kept": kept, "run_id": run_id}
    trained = f"training run {run_link(config.workspace, run_id)}" if run_id else "nothing new survived dedup, no training"
    publish_stats(
        "refresh", summary | {"files": [item.name for item in new]}, summary=f"**refresh** `{batch}`: {len(new)} new files, {trained}"
    )
    return summary | {"lineage": lineage}


def _corpus_shards_and_training(
    config: RefreshConfig, lineage: list[str], new: list[InboxFile], batch: str
) -> tuple[int, str | None, list[str]]:
    """One batch of new files through the stages; returns documents kept, the new run (if any) and the lineage."""
    workspace = Path(config.workspace)
    corpus_dir, shards_dir = (str(workspace / stage / f"refresh-{batch}") for stage in ("corpus", "shards"))
    index = str(workspace / config.dedup_index) if config.dedup_index else None
    files = stage_locally(new, workspace / "refresh" / "staging")
    kept = corpus_flow(files, corpus_dir, config.corpus, index, config.workspace)["stats"]["kept"]
    if not kept:
        return kept, None, list(lineage)
    shards_flow(corpus_dir, config.tokenizer, shards_dir, config.shards, config.workspace)
    base = lineage[-1] if lineage else config.base_run_id or newest_training_run(config.train.experiment, config.workspace)
    if base is None:
        raise ValueError("nothing to continue training from: run the pipeline first, or set base_run_id")
    lineage = list(lineage) or [base]
    train = config.train.model_copy(update={"init_run_id": base, "resume_run_id": None, "run_name": f"refresh-{batch}"})
    run_id = train_flow(shards_dir, train, config.workspace, {LINEAGE_TAG: lineage[0], "tinylm.refresh": batch})["run_id"]
    lineage.append(run_id)
    log_loss_figure(run_id, lineage)
    return kept, run_id, lineage
