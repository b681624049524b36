"""White-box distillation: a student learns a teacher run's token distributions, mixed with the data's own loss.

The teacher is a frozen model of the same tokenizer, run on each batch beside the student;
the student starts fresh in the config's shape, or from `init_run_id`'s weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinylm.model.transformer import Transformer
from tinylm.training.checkpointer import initial_weights
from tinylm.training.data import Batch
from tinylm.training.distill_config import DistillConfig
from tinylm.training.methods.interface import Method, Metrics, Objective, Setup, frozen_model, register


class Distillation(Objective):
    """White-box distillation: KL(teacher || student) on temperature-softened distributions, mixed with cross entropy.

    The KL is scaled by T^2 (Hinton et al.), so its gradients keep their size as T
    changes, and averaged over the positions the data trains (all, for token shards).
    """

    def __init__(self, teacher: Transformer, temperature: float, kl_weight: float) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.kl_weight = temperature, kl_weight

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        output = model(batch.inputs, batch.targets, batch.weights)
        with torch.no_grad():
            teacher_logits = self.teacher(batch.inputs).logits
        student = F.log_softmax(output.logits.float() / self.temperature, dim=-1)
        teacher = F.log_softmax(teacher_logits.float() / self.temperature, dim=-1)
        per_position = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1) * self.temperature**2
        weights = torch.ones_like(per_position) if batch.weights is None else (batch.weights > 0).float()
        kl = (per_position * weights).sum() / weights.sum().clamp(min=1)
        loss = self.kl_weight * kl + (1 - self.kl_weight) * output.loss
        return loss, {"kl": kl.detach(), "cross_entropy": output.loss.detach()}


@register
class Distill(Method):
    name = "distill"
    config = DistillConfig
    data_formats = ("pretrain", "sft")
    data_command = "token shards or chat-data --format sft"

    def objective(self, config: DistillConfig, setup: Setup) -> Objective:
        """The teacher loaded and checked against the data: one tokenizer, and room for the run's windows."""
        teacher = initial_weights(config.teacher_run_id, setup.workspace, None)
        tokenizer = setup.data.manifest.tokenizer_sha256
        if teacher.tokenizer_sha256 != tokenizer:
            raise ValueError(
                f"teacher run {config.teacher_run_id} was trained with tokenizer {teacher.tokenizer_sha256[:12]}, the "
                "data is "
                f"{tokenizer[:12]}: distillation compares distributions over one vocabulary"
            )
        if teacher.model_config.max_seq_len < config.seq_len:
            raise ValueError(
                f"seq_len {config.seq_len} exceeds the teacher's max_seq_len {teacher.model_config.max_seq_len}"
            )
        return Distillation(frozen_model(teacher, setup.device), config.temperature, config.kl_weight)
