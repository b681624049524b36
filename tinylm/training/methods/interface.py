"""What a training method is to the trainer, and the registry that finds a config's method.

The trainer owns everything methods share: the data order, micro-batches, the optimizer and
its schedule, checkpoints, resume, validation and logging. A method owns the rest: its config
class (a `TrainConfig` with its own fields, which is also its Prefect form), which data it
trains on, what it loads besides the model (a reference, a teacher), and its objective. A
new method is two modules: its config, which registers its command (`registry.register_method`:
the CLI, the flow, the deployment and the docs follow), and its method, a `@register` on its class.

Most objectives score the batch the data gives. A method that makes its own batches (GRPO
samples completions to the data's prompts and scores them) overrides `Objective.rollout`,
which the trainer calls before each micro-batch's forward pass, with the model in eval mode
and gradients off.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from tinylm.config import TrainConfig
from tinylm.model.transformer import Transformer
from tinylm.registry import training_methods
from tinylm.training.checkpointer import Initial
from tinylm.training.data import Batch, TrainingData
from tinylm.training.metrics import MetricsLogger

Metrics = dict[str, torch.Tensor]


class Objective(ABC):
    """What a training step minimises: the loss to back-propagate for a batch, and metrics that go with it
    (tensors, so that nothing waits on the device until a step's metrics are logged)."""

    # Whether the loss is cross entropy per token, so validation reports its perplexity.
    reports_perplexity: ClassVar[bool] = False
    # Whether `rollout` makes the batches trained on (the trainer skips the call otherwise).
    generates_batches: ClassVar[bool] = False
    # The metric the progress line shows beside the loss, where the loss alone says little (GRPO's reward).
    progress_metric: ClassVar[str | None] = None

    @abstractmethod
    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]: ...

    def start_shard(self, shard: int) -> None:
        """Called before a shard's first step (a resumed run's too): prepare what its batches need. Most need
        nothing; DPO computes the reference's log-probabilities for the shard's pairs."""
        return None

    def rollout(self, model: torch.nn.Module, batch: Batch, step: int) -> tuple[Batch, Metrics]:
        """The batch to train on, made from the data's batch with the current weights (no gradients, eval mode),
        and metrics of the making (rewards, lengths). Draw random numbers from a generator seeded with `step`:
        a resumed run then samples what an uninterrupted one did."""
        return batch, {}


@dataclass(frozen=True)
class Setup:
    """What a method may use to build its objective; `logger` logs to the run (a no-op on ranks past 0)."""

    data: TrainingData
    initial: Initial | None
    workspace: Path
    device: torch.device
    autocast: AbstractContextManager
    logger: MetricsLogger


class Method(ABC):
    """A training method: its config class, the data formats it trains on, and how it builds its objective."""

    name: ClassVar[str]
    config: ClassVar[type[TrainConfig]]
    # The `format` of the shards' or chat data's manifest it trains on, and the command that writes such data.
    data_formats: ClassVar[tuple[str, ...]]
    data_command: ClassVar[str]

    def check(self, config: TrainConfig, data: TrainingData) -> None:
        """Refuse data and settings that cannot go together, saying what to change, before any weights load."""
        if data.format not in self.data_formats:
            raise ValueError(
                f"{data.directory} holds {data.format} data; this training reads {self.data_command} output"
            )
        if config.lora is not None and not config.init_run_id:
            raise ValueError("LoRA trains adapters on existing weights: set init_run_id (--init) to the run they adapt")

    @abstractmethod
    def objective(self, config: TrainConfig, setup: Setup) -> Objective: ...

    def steps_per_batch(self, config: TrainConfig) -> int:
        """Optimizer steps taken on each batch of the data: 1, or GRPO's iterations over one rollout."""
        return 1

    def sequences_per_batch(self, config: TrainConfig) -> int:
        """Sequences a micro-batch trains on (what throughput counts): the data's rows, or a rollout's."""
        return config.batch_size

    def label(self, data_format: str) -> str:
        """What a run of this method on this data is called."""
        return self.name

    def run_name(self, config: TrainConfig, data_format: str) -> str:
        """The run's default name in MLflow: its label, with "+lora" when it trains adapters."""
        return f"{self.label(data_format)}+lora" if config.lora is not None else self.label(data_format)


_METHODS: dict[type[TrainConfig], Method] = {}


def register(method: type[Method]) -> type[Method]:
    """Make a method the one its config class selects (a class decorator)."""
    known = _METHODS.get(method.config)
    if known is not None and type(known) is not method:
        raise ValueError(f"{method.config.__name__} already selects the method {known.name}")
    _METHODS[method.config] = method()
    return method


def method_for(config: TrainConfig) -> Method:
    """The method a config selects: its class's, or its nearest registered base class's."""
    _import_registered_methods()
    for kind in type(config).__mro__:
        if kind in _METHODS:
            return _METHODS[kind]
    raise ValueError(f"no training method is registered for {type(config).__name__}")


def config_classes() -> dict[str, type[TrainConfig]]:
    """Every method's config class by name: how a config travels to torchrun's worker processes."""
    _import_registered_methods()
    return {kind.__name__: kind for kind in _METHODS}


def _import_registered_methods() -> None:
    """Import the method module of every registered command (a plugin's too): its `@register` runs on import."""
    for entry in training_methods():
        importlib.import_module(entry.method)


def frozen_model(initial: Initial, device: torch.device) -> Transformer:
    """A model that is read, never trained: a DPO reference, a distillation teacher."""
    model = Transformer(initial.model_config)
    model.load_state_dict(initial.weights)
    return model.to(device).eval().requires_grad_(False)


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each target's log-probability under the logits, (batch, seq), computed in fp32."""
    return -F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


def unwrapped(model: torch.nn.Module) -> Transformer:
    """The tinylm transformer inside DDP, torch.compile and PEFT wrappers."""
    while not isinstance(model, Transformer):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model.get_base_model()
    return model
