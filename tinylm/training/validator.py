"""What a run reports after each shard: the objective on fixed validation batches, and greedy sample continuations.

Neither draws a random number, so validating or sampling can never change the weights a
run ends with, resumed or not.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from tinylm.config import TrainConfig
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.tokens.tokenizer_files import EOS, load_tokenizer
from tinylm.training.data import Batch
from tinylm.training.methods.interface import Objective

_MAX_LOGGED_LOSS = 50.0


@dataclass
class Validator:
    batches: list[Batch]
    objective: Objective
    tokenizer_dir: Path
    config: TrainConfig
    device: torch.device
    autocast: AbstractContextManager

    @torch.no_grad()
    def measure(self, model: torch.nn.Module) -> dict[str, float]:
        """The objective's loss and metrics over the validation batches (the same ones every time), each batch
        weighed by its rows: the last may be smaller, so a split of fewer records than a batch is still scored."""
        if not self.batches:
            return {}
        model.eval()
        sums: dict[str, float] = {}
        rows = sum(len(batch.inputs) for batch in self.batches)
        for batch in self.batches:
            with self.autocast:
                loss, metrics = self.objective(model, batch.to(self.device))
            for name, value in {"loss": loss, **metrics}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch.inputs) / rows
        model.train()
        return sums

    def metrics(self, model: torch.nn.Module, shard_index: int) -> dict[str, float]:
        """The shard's number, the validation loss and metrics, and perplexity where the loss is cross entropy."""
        measured = self.measure(model)
        metrics = {"shard": float(shard_index)} | {f"val_{name}": value for name, value in measured.items()}
        if measured and self.objective.reports_perplexity:
            metrics["val_perplexity"] = math.exp(min(measured["loss"], _MAX_LOGGED_LOSS))
        return metrics

    def samples(self, model: torch.nn.Module) -> str | None:
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
