"""refresh flow: new corpus files in the inbox, deduplicated against everything before, into continued training.

Deployed with a daily cron schedule: drop files in the inbox and the model keeps
training. A refresh with nothing new reads the ledger, hashes only changed files, and
ends; two refreshes on one workspace take turns through a lock. Every refresh says what it
did (in its log and a summary artifact), and one that cannot run fails first thing, naming
what is missing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from tinylm.config import RefreshConfig
from tinylm.corpus.inbox import InboxFile, Ledger, batch_id, scan_inbox, stage_locally, workspace_lock
from tinylm.flows.corpus import corpus_flow
from tinylm.flows.report import publish_stats, run_name
from tinylm.flows.shards import shards_flow
from tinylm.flows.train import train_flow
from tinylm.storage.layout import refresh_state
from tinylm.tracking.groups import run_group
from tinylm.tracking.lineage import LINEAGE_TAG, log_loss_figure, newest_training_run, tokenizer_of_run
from tinylm.tracking.store import run_link


@flow(
    name="refresh",
    description="New corpus files in the workspace's inbox through corpus, dedup and shards into training "
    "that continues the newest run; scheduled daily.",
    flow_run_name=run_name("refresh"),
)
def refresh_flow(config: RefreshConfig = RefreshConfig()) -> dict:
    """Train on the corpus files new to the inbox, continuing the workspace's newest training run.

    Args:
        config: the workspace (the only setting a scheduled run needs), the inbox and each stage's settings
    """
    state = refresh_state(config.workspace)
    inbox = config.inbox_url()
    with workspace_lock(state, config.lock_timeout_s):
        ledger = Ledger.load(state)
        base = continued_run(config, ledger)
        tokenizer = config.tokenizer_dir() or tokenizer_of_run(base, config.train.experiment, config.workspace)
        if not Path(tokenizer).is_dir():
            raise FileNotFoundError(
                f"refresh: the tokenizer {tokenizer} is missing; set tokenizer to the one run {base} was trained with"
            )
        new = scan_inbox(inbox, ledger)
        if not new:
            ledger.save()  # the hashes of unchanged files, so the next refresh does not read them again
            message = f"nothing new in {inbox}: every file there was trained on before (or it is empty)"
            get_run_logger().info("refresh: %s", message)
            publish_stats("refresh", {"new_files": 0, "inbox": inbox}, summary=f"**refresh**: {message}.")
            return {"new_files": 0, "run_id": None, "inbox": inbox}
        batch = batch_id(new)
        get_run_logger().info("refresh %s: %d new files in %s, continuing run %s", batch, len(new), inbox, base)
        with run_group(
            "refresh", config.workspace, batch, config.train.experiment, {"tinylm.refresh": batch}, config.train.restart
        ):
            kept, run_id, lineage = _corpus_shards_and_training(config, tokenizer, ledger.runs, base, new, batch)
        ledger.runs = lineage
        ledger.record(new, batch)
    summary = {"new_files": len(new), "batch": batch, "documents_kept": kept, "run_id": run_id}
    trained = (
        f"trained run {run_link(config.workspace, run_id)}" if run_id else "nothing new survived dedup, no training"
    )
    get_run_logger().info(
        "refresh %s: %d new files, %s", batch, len(new), f"trained run {run_id}" if run_id else trained
    )
    publish_stats(
        "refresh",
        summary | {"files": [item.name for item in new]},
        summary=f"**refresh** `{batch}`: {len(new)} new files, {trained}",
    )
    return summary | {"lineage": lineage}


def continued_run(config: RefreshConfig, ledger: Ledger) -> str:
    """The run this refresh continues: the lineage's newest, else the configured base, else the newest finished training
    run."""
    if ledger.runs:
        return ledger.runs[-1]
    base = config.base_run_id or newest_training_run(config.train.experiment, config.workspace)
    if base is None:
        raise ValueError(
            f"refresh: no finished training run in experiment {config.train.experiment!r} of workspace "
            f"{config.workspace} "
            "to continue: run the pipeline there first, or set base_run_id"
        )
    return base


def _corpus_shards_and_training(
    config: RefreshConfig, tokenizer: str, lineage: list[str], base: str, new: list[InboxFile], batch: str
) -> tuple[int, str | None, list[str]]:
    """One batch of new files through the stages, training continuing `base`; returns documents kept, the new run
    (if any) and the lineage (which starts at `base` once a refresh has trained)."""
    workspace = Path(config.workspace)
    corpus_dir, shards_dir = (str(workspace / stage / f"refresh-{batch}") for stage in ("corpus", "shards"))
    index = str(workspace / config.dedup_index) if config.dedup_index else None
    files = stage_locally(new, refresh_state(workspace) / "staging")
    kept = corpus_flow(files, corpus_dir, config.corpus, index, config.workspace, allow_empty=True)["stats"]["kept"]
    if not kept:
        return kept, None, list(lineage)
    shards_flow(corpus_dir, tokenizer, shards_dir, config.shards, config.workspace)
    lineage = list(lineage) or [base]
    train = config.train.model_copy(update={"init_run_id": base, "resume_run_id": None, "run_name": f"refresh-{batch}"})
    run_id = train_flow(shards_dir, train, config.workspace, {LINEAGE_TAG: lineage[0], "tinylm.refresh": batch})[
        "run_id"
    ]
    lineage = [*lineage, run_id]
    log_loss_figure(run_id, lineage)
    return kept, run_id, lineage
