"""Direct preference optimisation (Rafailov et al. 2023) on chat-data DPO pairs, from an SFT run.

The policy learns to prefer each pair's chosen reply over its rejected one, relative to a
frozen reference (by default the SFT run it starts from). The reference's log-probabilities
are computed on each batch, or once per pair and kept beside the data (`ReferenceLogps`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F

from tinylm.model.transformer import Transformer
from tinylm.storage.atomic import atomic_path
from tinylm.training.checkpointer import initial_weights
from tinylm.training.data import Batch, ChatData, TrainingData
from tinylm.training.dpo_config import DpoConfig
from tinylm.training.methods.interface import (
    Method,
    Metrics,
    Objective,
    Setup,
    frozen_model,
    register,
    token_logps,
    unwrapped,
)

REFERENCE_DIR = "reference"


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each sequence's summed log-probability of its trained targets (TRL sums; a mean would favour short replies
    less)."""
    return (token_logps(logits, targets) * (weights > 0)).sum(-1)


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
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


class Preference(Objective):
    """DPO over batches whose first half are the chosen replies and second half the rejected ones.

    The reference's log-probabilities come from `reference_logps` (precomputed per unit, or
    the frozen reference model run on the batch under no_grad).
    """

    def __init__(
        self,
        beta: float,
        reference_logps: Callable[[Batch], torch.Tensor],
        prepare_shard: Callable[[int], None] = lambda shard: None,
    ) -> None:
        self.beta = beta
        self.reference_logps = reference_logps
        self.prepare_shard = prepare_shard

    def start_shard(self, shard: int) -> None:
        self.prepare_shard(shard)

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        output = model(batch.inputs)
        chosen, rejected = sequence_logps(output.logits, batch.targets, batch.weights).chunk(2)
        reference_chosen, reference_rejected = self.reference_logps(batch).to(chosen.device).chunk(2)
        loss, metrics = dpo_loss(chosen, rejected, reference_chosen, reference_rejected, self.beta)
        if output.aux_loss is not None:
            loss = loss + unwrapped(model).config.aux_loss_weight * output.aux_loss
        return loss, metrics


class ReferenceLogps:
    """Summed log-probabilities of each pair's chosen and rejected replies under the frozen reference."""

    def __init__(
        self,
        model: Transformer,
        data: ChatData,
        device: torch.device,
        autocast: AbstractContextManager,
        identity: dict | None,
    ) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.data, self.device, self.autocast = data, device, autocast
        self.directory = (
            None
            if identity is None
            else data.directory / REFERENCE_DIR / _key(identity | {"data": data.manifest.fingerprint})
        )
        total = sum(part.units for part in data.parts)
        self.table = np.full((total, 2), np.nan, dtype=np.float32)

    @torch.no_grad()
    def compute(self, batch: Batch) -> torch.Tensor:
        batch = batch.to(self.device)
        with self.autocast:
            logits = self.model(batch.inputs).logits
        return sequence_logps(logits, batch.targets, batch.weights)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.directory is None:
            return self.compute(batch)
        values = self.table[batch.units]
        if np.isnan(values).any():
            raise RuntimeError("reference log-probabilities were read before their shard was prepared")
        return torch.from_numpy(np.concatenate([values[:, 0], values[:, 1]]))

    def start_shard(self, shard: int) -> None:
        units = np.asarray(self.data.order[shard * self.data.shard_units : (shard + 1) * self.data.shard_units])
        self._prepare(units, f"shard-{shard:05d}.bin")

    def start_validation(self) -> None:
        size = self.data.config.batch_size * self.data.config.eval_batches
        self._prepare(np.asarray(self.data.validation[:size]), "validation.bin")

    def _prepare(self, units: np.ndarray, name: str) -> None:
        """Fill the table for these units from their file, computing and writing it first if it is not there."""
        if self.directory is None or not len(units):
            return
        path = self.directory / name
        if not path.exists():
            size = self.data.config.batch_size
            pieces = [
                self.compute(self.data.units_batch(units[start : start + size])).cpu()
                for start in range(0, len(units), size)
            ]
            values = torch.stack([torch.cat([piece.chunk(2)[side] for piece in pieces]) for side in (0, 1)], dim=1)
            with atomic_path(path) as tmp:
                values.numpy().astype("<f4").tofile(tmp)
        self.table[units] = np.fromfile(path, dtype="<f4").reshape(-1, 2)


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@register
class Dpo(Method):
    name = "dpo"
    config = DpoConfig
    data_formats = ("dpo",)
    data_command = "chat-data --format dpo"

    def check(self, config: DpoConfig, data: TrainingData) -> None:
        super().check(config, data)
        if not (config.init_run_id or config.reference_run_id):
            raise ValueError(
                "DPO starts from a fine-tuned model: set init_run_id (--init) to the SFT run; the reference defaults "
                "to it"
            )

    def objective(self, config: DpoConfig, setup: Setup) -> Objective:
        """The reference loaded (the starting weights unless another run is named), its log-probabilities prepared
        for validation when the run validates."""
        data, device = setup.data, setup.device
        reference = (
            setup.initial
            if not config.reference_run_id
            else initial_weights(config.reference_run_id, setup.workspace, data.manifest)
        )
        identity = {
            "run_id": reference.run_id,
            "checkpoint": reference.checkpoint,
            "seq_len": config.seq_len,
            "device": device.type,
        }
        cached = identity if config.precompute_reference else None
        logps = ReferenceLogps(frozen_model(reference, device), data, device, setup.autocast, cached)
        if config.eval_batches:
            logps.start_validation()
        return Preference(config.beta, logps, logps.start_shard)


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
