"""Pretraining and supervised fine-tuning: next-token cross entropy, the method a plain `TrainConfig` selects.

On token shards every position is trained; on chat data (SFT) the loss weighs each target,
0 on prompts and padding, so the model learns the assistant's replies only.
"""

from __future__ import annotations

import torch

from tinylm.config import TrainConfig
from tinylm.training.data import Batch
from tinylm.training.methods.interface import Method, Metrics, Objective, Setup, register


class LanguageModeling(Objective):
    """Cross entropy on the next token, weighted per target where the data weighs them."""

    reports_perplexity = True

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        return model(batch.inputs, batch.targets, batch.weights).loss, {}


@register
class Pretraining(Method):
    name = "train"
    config = TrainConfig
    data_formats = ("pretrain", "sft")
    data_command = "token shards or chat-data --format sft"

    def objective(self, config: TrainConfig, setup: Setup) -> Objective:
        return LanguageModeling()

    def label(self, data_format: str) -> str:
        """train on token shards, sft on chat data."""
        return "sft" if data_format == "sft" else "train"
