"""What a run reports after each shard: validation loss on fixed windows, and greedy sample continuations.

Neither draws a random number, so validating or sampling can never change the weights a
run ends with, resumed or not.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.config import TrainConfig
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.tokens.shard_files import ShardSet
from tinylm.tokens.tokenizer_files import EOS, load_tokenizer
from tinylm.training.data import windows_batch

_MAX_LOGGED_LOSS = 50.0


def _prefix(arrays: list[np.ndarray], tokens: int) -> np.ndarray:
    """The first `tokens` ids across memory-mapped shards: validation reads what it evaluates, not the whole split."""
    pieces, remaining = [], tokens
    for array in arrays:
        if remaining <= 0:
            break
        pieces.append(np.asarray(array[:remaining]))
        remaining -= len(pieces[-1])
    return np.concatenate(pieces)


@dataclass
class Validator:
    validation: ShardSet | None
    tokenizer_dir: Path
    config: TrainConfig
    device: torch.device
    autocast: AbstractContextManager

    @torch.no_grad()
    def loss(self, model: torch.nn.Module) -> float | None:
        """Mean loss over the first `eval_batches` windows of the validation shards (the same ones every time)."""
        config = self.config
        if self.validation is None or not self.validation.arrays or config.eval_batches == 0:
            return None
        stream = _prefix(self.validation.arrays, config.eval_batches * config.batch_size * config.seq_len + 1)
        order = np.arange((len(stream) - 1) // config.seq_len)
        batches = min(config.eval_batches, len(order) // config.batch_size)
        if batches == 0:
            return None
        model.eval()
        losses = []
        for batch in range(batches):
            inputs, targets = windows_batch(stream, order, batch, config)
            with self.autocast:
                losses.append(model(inputs.to(self.device), targets.to(self.device)).loss.item())
        model.train()
        return float(np.mean(losses))

    def metrics(self, model: torch.nn.Module, shard_index: int) -> dict[str, float]:
        """The shard's number, and its validation loss and perplexity when there is a validation split."""
        metrics = {"shard": float(shard_index)}
        if (loss := self.loss(model)) is not None:
            metrics |= {"val_loss": loss, "val_perplexity": math.exp(min(loss, _MAX_LOGGED_LOSS))}
        return metrics

    def samples(self, model: Transformer) -> str | None:
        """Greedy continuations of the sample prompts, or None when none are configured."""
        config = self.config
        if not (config.sample_prompts and config.sample_tokens):
            return None
        tokenizer = load_tokenizer(self.tokenizer_dir)
        stop = {tokenizer.token_to_id(EOS)}
        samples = []
        for prompt in config.sample_prompts:
            ids = tokenizer.encode(prompt, add_special_tokens=False).ids or [tokenizer.token_to_id(EOS)]
            new = list(stream_tokens(model, ids, config.sample_tokens, Sampling(temperature=0), stop))
            samples.append(f"### {prompt}\n{tokenizer.decode(ids + new)}\n")
        model.train()
        return "\n".join(samples)
