"""What a training step minimises: next-token loss, the DPO preference loss, or distillation from a teacher.

An objective takes the model and a batch and returns the loss to back-propagate and the
metrics that go with it (tensors, so that nothing waits on the device until a step's
metrics are logged). The trainer does not know which one it runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinylm.model.transformer import Transformer
from tinylm.training.data import Batch

Metrics = dict[str, torch.Tensor]


class LanguageModeling:
    """Cross entropy on the next token; chat data weighs each target (0 on prompts and padding)."""

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        return model(batch.inputs, batch.targets, batch.weights).loss, {}

    def start_shard(self, shard: int) -> None:
        """Nothing to prepare: the data is all it needs."""


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each sequence's summed log-probability of its trained targets (TRL sums; a mean would favour short replies less)."""
    token_logps = -F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
    return (token_logps * (weights > 0)).sum(-1)


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, reference_chosen: torch.Tensor, reference_rejected: torch.Tensor, beta: float
) -> tuple[torch.Tensor, Metrics]:
    """The sigmoid DPO loss (Rafailov et al. 2023, TRL's `loss_type="sigmoid"`) and its implicit rewards.

    loss = -log sigmoid(beta x ((chosen - reference_chosen) - (rejected - reference_rejected))), a
    side's reward beta x (its log-probability - the reference's); accuracy is the share of pairs
    whose chosen reward is the higher, margin the mean difference.
    """
    chosen_rewards = beta * (chosen - reference_chosen)
    rejected_rewards = beta * (rejected - reference_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return loss, {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margin": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracy": (chosen_rewards > rejected_rewards).float().mean(),
    }


class Preference:
    """DPO over batches whose first half are the chosen replies and second half the rejected ones.

    The reference's log-probabilities come from `reference_logps` (precomputed per unit, or
    the frozen reference model run on the batch under no_grad).
    """

    def __init__(self, beta: float, reference_logps: Callable[[Batch], torch.Tensor], start_shard: Callable[[int], None]) -> None:
        self.beta = beta
        self.reference_logps = reference_logps
        self.start_shard = start_shard

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        output = model(batch.inputs)
        chosen, rejected = sequence_logps(output.logits, batch.targets, batch.weights).chunk(2)
        reference_chosen, reference_rejected = self.reference_logps(batch).to(chosen.device).chunk(2)
        loss, metrics = dpo_loss(chosen, rejected, reference_chosen, reference_rejected, self.beta)
        if output.aux_loss is not None:
            loss = loss + _unwrapped(model).config.aux_loss_weight * output.aux_loss
        return loss, metrics


class Distillation:
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

    def start_shard(self, shard: int) -> None:
        """Nothing to prepare: the teacher runs on each batch."""


def _unwrapped(model: torch.nn.Module) -> Transformer:
    """The tinylm transformer inside DDP, torch.compile and PEFT wrappers."""
    while not isinstance(model, Transformer):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model.get_base_model()
    return model
