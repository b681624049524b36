"""Train stage: online pretraining (or SFT) over shards, a checkpoint in MLflow after each shard.

Built as torchtitan builds its trainer: `Trainer.build` sets up the parts (data, model,
optimizer and schedule), `train_step` makes one optimizer step over its micro-batches,
and `fit` is a short loop over shards and batches from a cursor that calls a
`Checkpointer`, a `Validator` and a `MetricsLogger`. The next steps' batches are cut on a
background thread (pinned, for a GPU) and the loss stays on the device until it is
logged, so a GPU is not left waiting on the host between steps. `train_model` adds what makes a run
a product: the same training twice returns the finished run, and a resumed run
continues from its newest checkpoint to the weights of one never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from tinylm.config import TrainConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.layout import run_checkpoints
from tinylm.tracking.store import check_reachable, tracking_uri
from tinylm.training import distributed
from tinylm.training.checkpointer import Checkpointer, Cursor, Initial, find_checkpoint, initial_weights
from tinylm.training.data import Batch, TrainingData, open_training_data, prefetch, unit_order
from tinylm.training.distributed import Ranks, from_main
from tinylm.training.methods import Objective, Setup, method_for
from tinylm.training.metrics import MetricsLogger, Throughput, model_flops_utilization
from tinylm.training.optimizer import build_optimizer, build_scheduler
from tinylm.training.runs import RESUMED_TAG, choose_run, log_run_params, start_run, train_fingerprint, training_lock
from tinylm.training.validator import Validator

_LOG = logging.getLogger(__name__)


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(setting)


def batches_in_shard(units: int, config: TrainConfig) -> int:
    """Optimizer steps a shard gives: its units (windows or conversations) in groups of batch_size x
    grad_accum_steps."""
    batches = units // (config.batch_size * config.grad_accum_steps)
    return min(batches, config.max_steps_per_shard) if config.max_steps_per_shard else batches


@dataclass
class Trainer:
    config: TrainConfig
    data: TrainingData
    network: Transformer
    model: torch.nn.Module
    trained: torch.nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_shard: list[int]
    device: torch.device
    ranks: Ranks
    initial: Initial | None

    @classmethod
    def build(
        cls,
        data: TrainingData,
        model_config: ModelConfig,
        initial: Initial | None,
        config: TrainConfig,
        device: torch.device,
        ranks: Ranks,
        workspace: Path,
    ) -> Trainer:
        """The model (seeded, or from `initial` weights; with adapters for LoRA), wrapped for DDP and compiled
        as asked, the objective, the optimizer over what trains, and the schedule."""
        torch.manual_seed(config.seed)
        network = Transformer(model_config)
        if initial:
            network.load_state_dict(initial.weights)
        model = network
        if config.lora is not None:
            from tinylm.weights.adapters import with_adapters

            model = with_adapters(network, config.lora)
        model = model.to(device)
        wrapped = (
            DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            if ranks.distributed
            else model
        )
        optimizer = build_optimizer(model, config, device)
        method = method_for(config)
        shard_count = min(data.shard_count(), config.max_shards or data.shard_count())
        repeats = method.steps_per_batch(config)
        one_pass = [batches_in_shard(data.units(i) // ranks.world, config) * repeats for i in range(shard_count)]
        steps_per_shard = one_pass * config.epochs  # the run's shards: the data's, once per epoch
        if sum(steps_per_shard) == 0:
            raise ValueError(f"{data.directory} holds too little for one batch of {config.batch_size}x{config.seq_len}")
        config = fitted_warmup(config, sum(steps_per_shard))
        scheduler = build_scheduler(optimizer, sum(steps_per_shard), config)
        trained = torch.compile(wrapped) if config.compile else wrapped
        autocast = autocast_for(device)
        setup = Setup(data, initial, workspace, device, autocast, MetricsLogger(ranks.is_main))
        objective = method.objective(config, setup)
        return cls(
            config,
            data,
            network,
            model,
            trained,
            objective,
            optimizer,
            scheduler,
            steps_per_shard,
            device,
            ranks,
            initial,
        )

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_shard)

    @property
    def autocast(self) -> torch.autocast:
        return autocast_for(self.device)

    def data_shard(self, shard: int) -> int:
        """The data's shard that the run's shard `shard` trains on: epoch e's shard i is the run's e * N + i."""
        return shard % (len(self.steps_per_shard) // self.config.epochs)

    def micro_batches(self, shard: int, order: np.ndarray, step: int) -> list[Batch]:
        """This process's slices of the data batch that optimizer step `step` of the run's shard `shard` trains on:
        one per gradient-accumulation step (a method taking several steps per batch takes them on the same one)."""
        accumulate, world, data_shard = self.config.grad_accum_steps, self.ranks.world, self.data_shard(shard)
        batch = step // method_for(self.config).steps_per_batch(self.config)
        return [
            self.data.batch(data_shard, order, (batch * accumulate + micro) * world + self.ranks.rank)
            for micro in range(accumulate)
        ]

    def train_step(
        self, micro_batches: list[Batch], step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Optimizer step `step` (from 0): accumulate the micro-batches' gradients, clip, step; the loss, the
        objective's
        metrics (each averaged over the micro-batches) and the gradient norm, left on the device: reading them
        waits for the device, so the loop reads them only when it logs or checkpoints."""
        self.optimizer.zero_grad(set_to_none=True)
        share = 1 / self.config.grad_accum_steps
        total = torch.zeros((), device=self.device)
        sums: dict[str, torch.Tensor] = {}
        for batch in micro_batches:
            batch, metrics = self.rollout(batch.to(self.device), step)
            with self.autocast:
                loss, objective_metrics = self.objective(self.trained, batch)
            metrics |= objective_metrics
            (loss * share).backward()
            total += loss.detach() * share
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0) + value * share
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return total, sums, grad_norm

    def rollout(self, batch: Batch, step: int) -> tuple[Batch, dict[str, torch.Tensor]]:
        """The batch the objective trains on: the data's, or for a method that generates its own, what it made
        from the data's with the current weights (in eval mode, without gradients)."""
        if not self.objective.generates_batches:
            return batch, {}
        self.model.eval()
        with torch.no_grad(), self.autocast:
            made = self.objective.rollout(self.model, batch, step)
        self.model.train()
        return made

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]

    @property
    def model_parameters(self) -> int:
        """The model's own parameters: PEFT adds its adapters to the network's modules, and they are not the model."""
        adapters = sum(parameter.numel() for parameter in self.trainable) if self.config.lora is not None else 0
        return self.network.num_parameters() - adapters

    def fit(
        self, run_id: str, workspace: Path, resuming: bool, progress: Callable[[float], None] | None = None
    ) -> dict:
        """Train from the run's newest checkpoint (when `resuming`) to the last step; checkpoint and validate after each
        shard."""
        config, ranks = self.config, self.ranks
        logger = MetricsLogger(ranks.is_main)
        run_dir = run_checkpoints(workspace, run_id)
        checkpointer = self._checkpointer(run_dir, logger)
        cursor = self._start(checkpointer, run_id, workspace, resuming)
        resumed_from = cursor.step if resuming else None
        tokenizer_dir = Path(self.data.manifest.tokenizer_dir)
        validator = Validator(
            self.data.validation_batches(), self.objective, tokenizer_dir, config, self.device, self.autocast
        )
        if config.eval_batches and not validator.batches and ranks.is_main:
            _LOG.warning(
                "%s holds no validation records: no val_loss will be logged (raise the data's validation_fraction)",
                self.data.directory,
            )
        sequences = method_for(config).sequences_per_batch(config)
        throughput = Throughput(sequences * config.seq_len * config.grad_accum_steps * ranks.world)
        loss = torch.tensor(float("nan"))
        self.trained.train()
        for shard in range(cursor.shard, len(self.steps_per_shard)):
            # Each epoch's pass over a data shard has an order of its own: seeded by the run's shard, not the data's.
            order = unit_order(self.data.units(self.data_shard(shard)), config, shard)
            self.objective.start_shard(self.data_shard(shard))
            throughput.restart(cursor.batch)
            steps = range(cursor.batch, self.steps_per_shard[shard])
            ahead = prefetch(functools.partial(self.micro_batches, shard, order), steps, pin=self.device.type == "cuda")
            with contextlib.closing(ahead):
                for batch, micro_batches in zip(steps, ahead):
                    loss, metrics, grad_norm = self.train_step(micro_batches, cursor.step)
                    cursor.step += 1
                    if (cursor.step - 1) % config.log_every == 0 or cursor.step == self.total_steps:
                        self._log_step(logger, cursor.step, loss, metrics, grad_norm, throughput, batch, progress)
                    inside = batch + 1 < self.steps_per_shard[shard]
                    if (
                        config.checkpoint_every
                        and cursor.step % config.checkpoint_every == 0
                        and inside
                        and ranks.is_main
                    ):
                        checkpointer.save(Cursor(shard, batch + 1, cursor.step), float(loss))
            cursor = Cursor(shard=shard + 1, batch=0, step=cursor.step)
            if ranks.is_main:
                logger.metrics(validator.metrics(self.model, shard), cursor.step)
                if (samples := validator.samples(self.model)) is not None:
                    logger.text(samples, f"samples/shard-{shard:05d}.txt")
                checkpointer.save(cursor, float(loss))
        return {
            "run_id": run_id,
            "steps": cursor.step,
            "final_loss": distributed.mean(ranks, float(loss), self.device),  # every node returns the same result
            "parameters": self.model_parameters,
            "reused": False,
            "resumed_from_step": resumed_from,
        }

    def _checkpointer(self, run_dir: Path, logger: MetricsLogger) -> Checkpointer:
        """Whole-model checkpoints, or for LoRA the adapters alone with the checkpoint they adapt named."""
        lora = self.config.lora.model_dump(mode="json") if self.config.lora is not None else None
        base = {"run_id": self.initial.run_id, "checkpoint": self.initial.checkpoint} if lora and self.initial else None
        return Checkpointer(
            run_dir,
            self.model,
            self.optimizer,
            self.scheduler,
            self.data.manifest,
            logger.checkpoint,
            self.network.config,
            lora,
            base,
        )

    def _start(self, checkpointer: Checkpointer, run_id: str, workspace: Path, resuming: bool) -> Cursor:
        """The cursor of the checkpoint a continued run resumes from (tagged on the run); a run with none
        logs its params and starts at zero."""
        found = from_main(self.ranks, find_checkpoint(run_id, workspace) if resuming and self.ranks.is_main else None)
        if found is not None:
            cursor = checkpointer.restore(found)
            if self.ranks.is_main:
                mlflow.set_tag(RESUMED_TAG, str(cursor.step))
            return cursor
        if self.ranks.is_main:
            details = {
                "parameters": self.model_parameters,
                "trainable_parameters": sum(parameter.numel() for parameter in self.trainable),
                "vocab_size": self.network.config.vocab_size,
                "total_steps": self.total_steps,
            }
            log_run_params(self.config, details | {"data_dir": self.data.directory, "processes": self.ranks.world})
        return Cursor()

    def _log_step(
        self,
        logger: MetricsLogger,
        step: int,
        loss: torch.Tensor,
        objective_metrics: dict[str, torch.Tensor],
        grad_norm: torch.Tensor,
        throughput: Throughput,
        batch: int,
        progress: Callable[[float], None] | None,
    ) -> None:
        """Loss (averaged over ranks: every rank calls this), learning rate, gradient norm, throughput and, on GPU, MFU;
        and a progress line for the console and the Prefect run's logs, so a run writing to a file is not silent for
        hours."""
        tokens_per_s = throughput.tokens_per_s(batch)
        metrics = {
            "loss": distributed.mean(self.ranks, float(loss), self.device),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "tokens_per_s": tokens_per_s,
        } | {name: distributed.mean(self.ranks, float(value), self.device) for name, value in objective_metrics.items()}
        if self.device.type == "cuda":
            metrics["mfu"] = model_flops_utilization(self.network, self.config, tokens_per_s / self.ranks.world)
        logger.metrics(metrics, step)
        if self.ranks.is_main:
            seconds_left = (self.total_steps - step) * throughput.seconds_per_step(batch)
            shown = self.objective.progress_metric
            extra = f"  {shown} {metrics[shown]:.4f}" if shown in metrics else ""
            _LOG.info(
                "step %d/%d  loss %.4f%s  %.0f tokens/s  ETA %s",
                step,
                self.total_steps,
                metrics["loss"],
                extra,
                tokens_per_s,
                _duration(seconds_left),
            )
            if progress is not None:
                progress(step / self.total_steps)


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 on a GPU, fp32 elsewhere: the one precision policy of training, validation and evaluation."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def train_model(
    data_dir: str | Path,
    workspace: str | Path,
    config: TrainConfig,
    tags: dict[str, str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Train over the data's shards in manifest order and return the run id and final loss.

    `data_dir` holds token shards (pretraining) or chat data: SFT conversations (loss on
    the assistant's tokens only) or, for DPO, preference pairs. The config's
    class picks the method (see `methods/`); `config.init_run_id` starts from another
    model (a run's newest checkpoint, a step, an exported folder), its model shape included, with a fresh optimizer and
    schedule,
    and `config.lora` trains adapters on it instead of its weights. Under
    `torchrun`, each process trains its slice of every batch (so `batch_size` is per
    process) and rank 0 alone logs and checkpoints. `progress` hears the share of steps
    done whenever metrics are logged (the flow turns it into a Prefect progress artifact).
    """
    data = open_training_data(data_dir, config)
    method = method_for(config)
    method.check(config, data)
    initial = initial_weights(config.init_run_id, Path(workspace), data.manifest) if config.init_run_id else None
    if config.lora is not None and initial is not None and initial.run_id is None:
        raise ValueError(
            f"LoRA adapters name the run they adapt, and {config.init_run_id} names none: set init_run_id to a run id"
        )
    model_config = (
        initial.model_config if initial else dataclasses.replace(config.model, vocab_size=data.manifest.vocab_size)
    )
    if config.seq_len > model_config.max_seq_len:
        raise ValueError(f"seq_len {config.seq_len} exceeds the model's max_seq_len {model_config.max_seq_len}")
    device = pick_device(config.device)
    ranks = distributed.start(device.type)
    device = distributed.device_for(ranks, device)
    expected = train_fingerprint(data_dir, config)
    if ranks.is_main:
        check_reachable(tracking_uri(workspace))
    with training_lock(workspace, expected) if ranks.is_main else contextlib.nullcontext():
        earlier, resume_id = from_main(ranks, choose_run(config, workspace, expected) if ranks.is_main else None)
        if earlier is not None:
            distributed.finish(ranks)
            return earlier
        trainer = Trainer.build(data, model_config, initial, config, device, ranks, Path(workspace))
        run_ending, run_id = start_run(
            config, workspace, tags, ranks, expected, resume_id, method.run_name(config, data.format)
        )
        with run_ending:
            result = trainer.fit(run_id, Path(workspace), resume_id is not None, progress)
            distributed.finish(ranks)
            return result


def fitted_warmup(config: TrainConfig, total_steps: int) -> TrainConfig:
    """The config with a warmup shorter than the run. A warmup as long as the run would never reach the learning
    rate; it happens to a scheduled refresh whose new data gives a few steps, which should train rather than fail.
    So it becomes a tenth of the run, said in the log; the run's params record the warmup used."""
    if config.warmup_steps < total_steps:
        return config
    fitted = total_steps // 10
    _LOG.warning(
        "warmup_steps %d is not below this run's %d optimizer steps: warming up over %d steps instead",
        config.warmup_steps,
        total_steps,
        fitted,
    )
    return config.model_copy(update={"warmup_steps": fitted})
