"""Train stage: online pretraining over token shards, a checkpoint in MLflow after each shard.

The data order is a pure function of (seed, shard index), and the cursor (shard, batch,
step) is saved with the model, optimizer, scheduler and RNG states, so a run resumed
from a checkpoint continues exactly where the checkpoint was taken: a run killed at any
moment and resumed ends with the weights of one never interrupted. Validation and the
sample generations draw no random numbers, so they cannot change the result either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from tinylm.config import TrainConfig
from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import (
    META_FILE,
    download_checkpoint,
    load_checkpoint,
    log_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from tinylm.storage.manifest import fingerprint, manifest_hash
from tinylm.tokens.shard_files import ShardSet
from tinylm.tracking.store import check_reachable, client, flatten_params, group_tags, retrying, tracking_uri, use_experiment
from tinylm.training import distributed
from tinylm.training.distributed import Ranks, from_main
from tinylm.tokens.tokenizer import EOS, TOKENIZER_FILE, load_tokenizer
from tinylm.training.data import open_training_data, unit_order, windows_batch


@dataclass
class Cursor:
    """Where training stands: the next batch to train is `batch` of shard `shard`."""

    shard: int = 0
    batch: int = 0
    step: int = 0


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(setting)


def batches_in_shard(units: int, config: TrainConfig) -> int:
    """Optimizer steps a shard gives: its units (windows or conversations) in groups of batch_size x grad_accum_steps."""
    batches = units // (config.batch_size * config.grad_accum_steps)
    return min(batches, config.max_steps_per_shard) if config.max_steps_per_shard else batches


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine decay to `min_learning_rate` at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)


def build_optimizer(model: Transformer, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norms' gains or biases only hurts."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95), fused=device.type == "cuda")


def _newest_local_checkpoint(run_dir: Path) -> Path | None:
    complete = sorted(path.parent for path in run_dir.glob(f"*/{META_FILE}"))
    return complete[-1] if complete else None


def _resume_state(run_id: str, run_dir: Path) -> tuple[dict, dict] | None:
    """Newest complete checkpoint of a run: the local copy if there is one, else from MLflow."""
    local = _newest_local_checkpoint(run_dir)
    if local is None:
        local = retrying(lambda: download_checkpoint(run_id, run_dir / "_downloaded"))
    return load_checkpoint(local) if local is not None else None


@torch.no_grad()
def validation_loss(model: torch.nn.Module, validation: ShardSet | None, config: TrainConfig, device: torch.device, autocast) -> float | None:
    """Mean loss over the first `eval_batches` windows of the validation shards (the same ones every time)."""
    if validation is None or not validation.arrays or config.eval_batches == 0:
        return None
    stream = _prefix(validation.arrays, config.eval_batches * config.batch_size * config.seq_len + 1)
    order = np.arange((len(stream) - 1) // config.seq_len)
    batches = min(config.eval_batches, len(order) // config.batch_size)
    if batches == 0:
        return None
    model.eval()
    losses = []
    for batch in range(batches):
        inputs, targets = windows_batch(stream, order, batch, config)
        with autocast:
            losses.append(model(inputs.to(device), targets.to(device)).loss.item())
    model.train()
    return float(np.mean(losses))


def _prefix(arrays: list[np.ndarray], tokens: int) -> np.ndarray:
    """The first `tokens` ids across memory-mapped shards: validation reads what it evaluates, not the whole split."""
    pieces, remaining = [], tokens
    for array in arrays:
        if remaining <= 0:
            break
        pieces.append(np.asarray(array[:remaining]))
        remaining -= len(pieces[-1])
    return np.concatenate(pieces)


def sample_generations(model: Transformer, tokenizer_dir: Path, config: TrainConfig) -> str:
    """Greedy continuations of the sample prompts: no random numbers drawn, so sampling never changes training."""
    tokenizer = load_tokenizer(tokenizer_dir)
    stop = {tokenizer.token_to_id(EOS)}
    samples = []
    for prompt in config.sample_prompts:
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids or [tokenizer.token_to_id(EOS)]
        new = list(stream_tokens(model, ids, config.sample_tokens, Sampling(temperature=0), stop))
        samples.append(f"### {prompt}\n{tokenizer.decode(ids + new)}\n")
    model.train()
    return "\n".join(samples)


def model_flops_utilization(model: Transformer, config: TrainConfig, tokens_per_s: float) -> float:
    """Achieved over peak FLOP/s, counting 6 per parameter per token plus attention's 12 x layers x dim x seq."""
    shape = model.config
    per_token = 6 * model.num_parameters() + 12 * shape.n_layers * shape.dim * config.seq_len
    return per_token * tokens_per_s / (config.peak_tflops * 1e12)


def _initial_weights(run_id: str, workspace: Path, manifest: dict) -> tuple[dict, ModelConfig]:
    """Weights and shape of another run's newest checkpoint, refused if its tokenizer is not the data's."""
    found = _resume_state(run_id, workspace / "checkpoints" / run_id)
    if found is None:
        raise FileNotFoundError(f"run {run_id} has no complete checkpoint to start from")
    state, meta = found
    _check_tokenizer(meta, manifest)
    return state["model"], ModelConfig(**meta["model_config"])


FINGERPRINT_TAG = "tinylm.fingerprint"


def train_fingerprint(data_dir: str | Path, config: TrainConfig) -> str:
    """What decides a training run's result: its data (by manifest hash) and its config, resume aside."""
    return fingerprint("train", config.model_dump(mode="json", exclude={"resume_run_id"}), {"data": manifest_hash(data_dir)})


def _finished_run(experiment: str, workspace: str | Path, expected: str) -> dict | None:
    """The result of a finished run with the same fingerprint: re-running the same training does no work."""
    experiment_id = use_experiment(experiment, workspace)
    runs = client().search_runs(
        [experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{expected}' and attributes.status = 'FINISHED'", max_results=1
    )
    if not runs:
        return None
    run = runs[0]
    return {
        "run_id": run.info.run_id,
        "steps": int(run.data.params["total_steps"]),
        "final_loss": run.data.metrics["loss"],
        "parameters": int(run.data.params["parameters"]),
        "reused": True,
    }


def _run_tags(tags: dict[str, str] | None, config: TrainConfig, expected: str) -> dict[str, str]:
    """The caller's tags, the run's fingerprint, and the run this one starts from (MLflow links SFT to its pretraining)."""
    starts_from = {"tinylm.init_run_id": config.init_run_id} if config.init_run_id else {}
    return group_tags() | (tags or {}) | {FINGERPRINT_TAG: expected} | starts_from


def _check_tokenizer(meta: dict, manifest: dict) -> None:
    if meta["tokenizer_sha256"] != manifest["tokenizer_sha256"]:
        raise ValueError(
            f"the data was built with tokenizer {manifest['tokenizer_sha256'][:12]}, "
            f"the checkpoint with {meta['tokenizer_sha256'][:12]}: refusing to mix them"
        )


class RunTracker:
    """A training run's MLflow calls, retried while the server is unreachable; rank 0 makes them, other ranks none."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.active:
            retrying(lambda: mlflow.log_metrics(values, step=step))

    def text(self, text: str, path: str) -> None:
        if self.active:
            retrying(lambda: mlflow.log_text(text, path))

    def checkpoint(self, directory: Path, name: str) -> None:
        if self.active:
            retrying(lambda: log_checkpoint(directory, name))


def _start_run(config: TrainConfig, workspace: str | Path, tags: dict[str, str] | None, ranks: Ranks, expected: str):
    """The MLflow run (rank 0), or a stand-in context on the other ranks; and the run id every rank shares."""
    if not ranks.is_main:
        return contextlib.nullcontext(), from_main(ranks, None)
    experiment_id = use_experiment(config.experiment, workspace)
    run = (
        mlflow.start_run(run_id=config.resume_run_id)
        if config.resume_run_id
        else mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name, tags=_run_tags(tags, config, expected))
    )
    return run, from_main(ranks, run.info.run_id)


def train_model(
    data_dir: str | Path,
    workspace: str | Path,
    config: TrainConfig,
    tags: dict[str, str] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict:
    """Train over the data's shards in manifest order and return the run id and final loss.

    `data_dir` holds token shards (pretraining) or chat-data SFT parquet (loss on the
    assistant's tokens only); `config.init_run_id` starts from another run's newest
    checkpoint, its model shape included, with a fresh optimizer and schedule. Under
    `torchrun`, each process trains its slice of every batch (so `batch_size` is per
    process) and rank 0 alone logs and checkpoints. `progress` hears the share of steps
    done whenever metrics are logged (the flow turns it into a Prefect progress artifact).
    """
    data = open_training_data(data_dir, config)
    manifest = data.manifest
    initial = _initial_weights(config.init_run_id, Path(workspace), manifest) if config.init_run_id else None
    model_config = initial[1] if initial else dataclasses.replace(config.model, vocab_size=manifest["vocab_size"])
    if config.seq_len > model_config.max_seq_len:
        raise ValueError(f"seq_len {config.seq_len} exceeds the model's max_seq_len {model_config.max_seq_len}")
    device = pick_device(config.device)
    ranks = distributed.start(device.type)
    device = distributed.device_for(ranks, device)
    expected = train_fingerprint(data_dir, config)
    if ranks.is_main:
        check_reachable(tracking_uri(workspace))
    earlier = from_main(ranks, _finished_run(config.experiment, workspace, expected) if ranks.is_main and not config.resume_run_id else None)
    if earlier is not None:
        distributed.finish(ranks)
        return earlier
    torch.manual_seed(config.seed)
    model = Transformer(model_config)
    if initial:
        model.load_state_dict(initial[0])
    model = model.to(device)
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.distributed else model
    trained = torch.compile(wrapped) if config.compile else wrapped
    optimizer = build_optimizer(model, config, device)
    shard_count = min(data.shard_count(), config.max_shards or data.shard_count())
    steps_per_shard = [batches_in_shard(data.units(i) // ranks.world, config) for i in range(shard_count)]
    total_steps = sum(steps_per_shard)
    if total_steps == 0:
        raise ValueError(f"{data_dir} holds too little for one batch of {config.batch_size}x{config.seq_len}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, total_steps, config) / config.learning_rate
    )
    run, run_id = _start_run(config, workspace, tags, ranks, expected)
    tracker = RunTracker(ranks.is_main)
    with run:
        run_dir = Path(workspace) / "checkpoints" / run_id
        cursor = Cursor()
        resumed = from_main(ranks, _resume_state(run_id, run_dir) if config.resume_run_id and ranks.is_main else None)
        if resumed is not None:
            state, meta = resumed
            _check_tokenizer(meta, manifest)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            restore_rng_state(state["rng"])
            cursor = Cursor(**meta["cursor"])
        elif not config.resume_run_id and ranks.is_main:
            mlflow.log_params(
                flatten_params("", config.model_dump(mode="json"))
                | {
                    "parameters": str(model.num_parameters()),
                    "vocab_size": str(model_config.vocab_size),
                    "total_steps": str(total_steps),
                    "data_dir": str(data_dir),
                    "processes": str(ranks.world),
                }
            )
        tokenizer_dir = Path(manifest["tokenizer_dir"])
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        tokens_per_step = config.batch_size * config.seq_len * config.grad_accum_steps * ranks.world

        def checkpoint(at: Cursor, loss: float) -> None:
            if not ranks.is_main:
                return
            name = f"step-{at.step:08d}"
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
            meta = {
                "cursor": dataclasses.asdict(at),
                "model_config": dataclasses.asdict(model_config),
                "tokenizer_sha256": manifest["tokenizer_sha256"],
                "eos_id": manifest["eos_id"],
                "loss": loss,
            }
            tracker.checkpoint(save_checkpoint(run_dir / name, state, meta, {TOKENIZER_FILE: tokenizer_dir / TOKENIZER_FILE}), name)

        last_loss = float("nan")
        trained.train()
        for shard_index in range(cursor.shard, shard_count):
            order = unit_order(data.units(shard_index), config, shard_index)
            started = time.perf_counter()
            for batch in range(cursor.batch, steps_per_shard[shard_index]):
                optimizer.zero_grad(set_to_none=True)
                last_loss = 0.0
                for micro in range(config.grad_accum_steps):
                    index = (batch * config.grad_accum_steps + micro) * ranks.world + ranks.rank
                    inputs, targets, mask = data.batch(shard_index, order, index)
                    with autocast:
                        loss = trained(inputs.to(device), targets.to(device), None if mask is None else mask.to(device)).loss
                    loss = loss / config.grad_accum_steps
                    loss.backward()
                    last_loss += loss.item()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                cursor.step += 1
                if (cursor.step - 1) % config.log_every == 0 or cursor.step == total_steps:
                    tokens_per_s = tokens_per_step * (batch - cursor.batch + 1) / max(time.perf_counter() - started, 1e-9)
                    metrics = {"loss": distributed.mean(ranks, last_loss, device), "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_s}
                    if device.type == "cuda":
                        metrics["mfu"] = model_flops_utilization(model, config, tokens_per_s / ranks.world)
                    tracker.metrics(metrics, cursor.step)
                    if progress is not None and ranks.is_main:
                        progress(cursor.step / total_steps)
                inside = batch + 1 < steps_per_shard[shard_index]
                if config.checkpoint_every and cursor.step % config.checkpoint_every == 0 and inside:
                    checkpoint(Cursor(shard_index, batch + 1, cursor.step), last_loss)
            cursor = Cursor(shard=shard_index + 1, batch=0, step=cursor.step)
            if ranks.is_main:
                shard_metrics = {"shard": float(shard_index)}
                if (loss_value := validation_loss(model, data.validation, config, device, autocast)) is not None:
                    shard_metrics |= {"val_loss": loss_value, "val_perplexity": math.exp(min(loss_value, 50.0))}
                tracker.metrics(shard_metrics, cursor.step)
                if config.sample_prompts and config.sample_tokens:
                    tracker.text(sample_generations(model, tokenizer_dir, config), f"samples/shard-{shard_index:05d}.txt")
            checkpoint(cursor, last_loss)
        distributed.finish(ranks)
        return {"run_id": run_id, "steps": cursor.step, "final_loss": last_loss, "parameters": model.num_parameters(), "reused": False}

