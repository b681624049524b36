"""What a training run tells MLflow: step metrics, texts and checkpoints, from rank 0 alone, retried through outages."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow

from tinylm.config import TrainConfig
from tinylm.model.transformer import Transformer
from tinylm.tracking.checkpoint_artifacts import log_checkpoint
from tinylm.tracking.retry import retrying


def model_flops_utilization(model: Transformer, config: TrainConfig, tokens_per_s: float) -> float:
    """Achieved over peak FLOP/s, counting 6 per parameter per token plus attention's 12 x layers x dim x seq."""
    shape = model.config
    per_token = 6 * model.num_parameters() + 12 * shape.n_layers * shape.dim * config.seq_len
    return per_token * tokens_per_s / (config.peak_tflops * 1e12)


class MetricsLogger:
    """A training run's MLflow calls, retried while the server is unreachable; rank 0 makes them, other ranks none."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.active:
            retrying(lambda: mlflow.log_metrics(values, step=step))

    def text(self, text: str, path: str) -> None:
        if self.active:
            retrying(lambda: mlflow.log_text(text, path))

    def table(self, data: dict[str, list], path: str) -> None:
        """A table artifact (columns of equal length), which MLflow's run page shows as a table."""
        if self.active:
            retrying(lambda: mlflow.log_table(data, path))

    def checkpoint(self, directory: Path, name: str) -> None:
        if self.active:
            retrying(lambda: log_checkpoint(directory, name))


class Throughput:
    """Tokens per second since the current shard began (restarted at each shard, so a resume reads true)."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.restart(0)

    def restart(self, first_batch: int) -> None:
        self.first_batch = first_batch
        self.started = time.perf_counter()

    def tokens_per_s(self, batch: int) -> float:
        return self.tokens_per_step / self.seconds_per_step(batch)

    def seconds_per_step(self, batch: int) -> float:
        return max(time.perf_counter() - self.started, 1e-9) / (batch - self.first_batch + 1)
