"""The method of smoothing_config.py: cross entropy with label smoothing, weighted per target as the data says."""

import torch
import torch.nn.functional as F

from tests.plugins.smoothing_config import SmoothingConfig
from tinylm.training.data import Batch
from tinylm.training.methods import Method, Objective, Setup, register
from tinylm.training.methods.interface import Metrics


class SmoothedCrossEntropy(Objective):
    reports_perplexity = False  # the smoothed loss is not a log-likelihood

    def __init__(self, smoothing: float) -> None:
        self.smoothing = smoothing

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        logits = model(batch.inputs).logits.float()
        losses = F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), reduction="none", label_smoothing=self.smoothing
        )
        weights = torch.ones_like(losses) if batch.weights is None else batch.weights.flatten().float()
        return (losses * weights).sum() / weights.sum().clamp(min=1.0), {}


@register
class Smoothing(Method):
    name = "smoothed-train"
    config = SmoothingConfig
    data_formats = ("pretrain", "sft")
    data_command = "token shards or chat-data --format sft"

    def objective(self, config: SmoothingConfig, setup: Setup) -> Objective:
        return SmoothedCrossEntropy(config.smoothing)
