"""A model's history in MLflow: the runs a refresh continues from, and its loss across all of them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.figure import Figure  # noqa: E402

from tinylm.storage.manifest import MANIFEST_NAME, TokenizedManifest, read_manifest  # noqa: E402
from tinylm.tracking.store import client, newest_runs, use_experiment  # noqa: E402

STAGE_TAG = "tinylm.stage"
DATA_TAG = "tinylm.shards"  # the directory of token shards or chat data a training run read
LINEAGE_TAG = "tinylm.lineage"
LOSS_PLOT = "loss-across-refreshes.png"


def newest_training_run(experiment: str, workspace: str) -> str | None:
    """The most recent finished training run of the experiment, or None."""
    experiment_id = use_experiment(experiment, workspace)
    runs = newest_runs(experiment_id, f"tags.`{STAGE_TAG}` = 'train' and attributes.status = 'FINISHED'", max_results=1)
    return runs[0].info.run_id if runs else None


def tokenizer_of_run(run_id: str, experiment: str, workspace: str) -> str:
    """The tokenizer directory a training run's data was tokenized with, from the manifest of its data
    (`tinylm.shards`)."""
    use_experiment(experiment, workspace)
    data = client().get_run(run_id).data.tags.get(DATA_TAG)
    if data is None or not (Path(data) / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            f"run {run_id}'s training data ({data or 'not recorded'}) is not on this machine, so its tokenizer is "
            "unknown: set the tokenizer directory it was trained with"
        )
    return read_manifest(Path(data), TokenizedManifest).tokenizer_dir


def loss_figure(run_ids: list[str]) -> Figure:
    """Training loss of each run in turn, steps laid end to end, a dashed line where each refresh began."""
    tracking = client()
    figure, axes = plt.subplots(figsize=(8, 4))
    offset = 0
    for index, run_id in enumerate(run_ids):
        history = sorted(tracking.get_metric_history(run_id, "loss"), key=lambda metric: metric.step)
        if not history:
            continue
        axes.plot(
            [offset + m.step for m in history], [m.value for m in history], label=tracking.get_run(run_id).info.run_name
        )
        if index:
            axes.axvline(offset, color="grey", linestyle="--", linewidth=0.8)
        offset += history[-1].step
    axes.set_xlabel("step (runs end to end)")
    axes.set_ylabel("training loss")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def log_loss_figure(run_id: str, lineage: list[str]) -> None:
    figure = loss_figure(lineage)
    client().log_figure(run_id, figure, LOSS_PLOT)
    plt.close(figure)
