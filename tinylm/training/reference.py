"""The DPO reference model's log-probabilities: computed on each batch, or once per pair and kept beside the data.

Precomputed, they are written shard by shard as the run reaches each shard (a float32
pair per unit, atomically), so a run killed while computing them recomputes only the
shard it was in, and a second run with the same reference (another `beta`, say) reads
them instead of running the reference again. The folder is named for what decides
the numbers: the data, the reference checkpoint, the sequence length and the device.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager

import numpy as np
import torch

from tinylm.model.transformer import Transformer
from tinylm.storage.atomic import atomic_path
from tinylm.training.data import Batch, ChatData
from tinylm.training.objectives import sequence_logps

REFERENCE_DIR = "reference"


class ReferenceLogps:
    """Summed log-probabilities of each pair's chosen and rejected replies under the frozen reference."""

    def __init__(
        self, model: Transformer, data: ChatData, device: torch.device, autocast: AbstractContextManager, identity: dict | None
    ) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.data, self.device, self.autocast = data, device, autocast
        self.directory = (
            None if identity is None else data.directory / REFERENCE_DIR / _key(identity | {"data": data.manifest["fingerprint"]})
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
            pieces = [self.compute(self.data.units_batch(units[start : start + size])).cpu() for start in range(0, len(units), size)]
            values = torch.stack([torch.cat([piece.chunk(2)[side] for piece in pieces]) for side in (0, 1)], dim=1)
            with atomic_path(path) as tmp:
                values.numpy().astype("<f4").tofile(tmp)
        self.table[units] = np.fromfile(path, dtype="<f4").reshape(-1, 2)


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
