"""Group relative policy optimisation (Shao et al. 2024, DeepSeekMath) with verifiable rewards, from an SFT run.

For each prompt the policy samples a group of `num_generations` completions, in one batched
generation for the whole micro-batch (`model.generation.generate_batch`). The rewards
score them; each reward minus its group's mean (divided by the group's spread, unless
`scale_rewards` says otherwise) is every token's advantage. The loss is the clipped
policy-ratio objective with a KL penalty to the reference (the frozen starting weights, or
under LoRA the same network with its adapters switched off), as TRL's GRPOTrainer defines
it, with its three normalisations (`loss_type`).

A rollout's random numbers come from a generator seeded by the seed, the rollout's number
and its prompts, so a run resumed after a kill samples what an uninterrupted one did.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from tinylm.model.generation import Sampling, generate_batch
from tinylm.tokens.prompts import PromptSettings, encoded_prompts, read_prompts
from tinylm.tokens.tokenizer_files import load_tokenizer
from tinylm.training.data import Batch, PromptData, TrainingData
from tinylm.training.grpo_config import GrpoConfig, LossType
from tinylm.training.methods.interface import (
    Method,
    Metrics,
    Objective,
    Setup,
    frozen_model,
    register,
    token_logps,
)
from tinylm.training.metrics import MetricsLogger
from tinylm.training.rewards import ReferenceCheck, Reward, check_references, load_rewards, score
from tinylm.weights.reference import locate_model

_LOG = logging.getLogger(__name__)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    reference_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    epsilon: float,
    epsilon_high: float,
    loss_type: LossType,
    max_completion_tokens: int,
) -> tuple[torch.Tensor, Metrics]:
    """The clipped surrogate with a KL penalty, per token, normalised as `loss_type` says (TRL's definitions).

    Per completion token t of completion i, with r = exp(logps - old_logps):
        -min(r x A_i, clip(r, 1 - epsilon, 1 + epsilon_high) x A_i) + beta x KL_t,
    KL_t = exp(ref - logps) - (ref - logps) - 1 (Schulman's k3 estimator, always >= 0).
    clip_ratio is the share of tokens where the clip took the gradient away.
    """
    ratio = torch.exp(logps - old_logps)
    advantage = advantages[:, None]
    per_token = -torch.min(ratio * advantage, ratio.clamp(1 - epsilon, 1 + epsilon_high) * advantage)
    tokens = mask.sum().clamp(min=1)
    metrics: Metrics = {}
    if reference_logps is not None and beta:
        delta = reference_logps - logps
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
        metrics["kl"] = (kl * mask).sum().detach() / tokens
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / tokens
    else:
        loss = (per_token * mask).sum() / (len(logps) * max_completion_tokens)
    clipped = ((ratio < 1 - epsilon) & (advantage < 0)) | ((ratio > 1 + epsilon_high) & (advantage > 0))
    metrics["clip_ratio"] = (clipped.float() * mask).sum().detach() / tokens
    return loss, metrics


def group_advantages(rewards: torch.Tensor, group: int, scale: str) -> torch.Tensor:
    """Each reward minus its group's mean, divided by the group's std (`group`), the batch's (`batch`), or 1."""
    grouped = rewards.view(-1, group)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).flatten()
    if scale == "group":
        return centred / (grouped.std(dim=1).repeat_interleave(group) + 1e-4)
    if scale == "batch":
        return centred / (rewards.std() + 1e-4)
    return centred


@dataclass
class Rollout(Batch):
    """Completions to train on: prompt and completion ids right-padded, `weights` 1 on completion tokens, and
    what the loss compares the policy with."""

    advantages: torch.Tensor | None = None
    old_logps: torch.Tensor | None = None
    reference_logps: torch.Tensor | None = None


class GroupRelative(Objective):
    """GRPO's objective: `rollout` samples and scores a micro-batch's groups, `__call__` is the policy loss."""

    generates_batches = True
    progress_metric = "reward"

    def __init__(
        self,
        config: GrpoConfig,
        rewards: list[Reward],
        data: PromptData,
        tokenizer: Tokenizer,
        reference: Callable[[torch.nn.Module], contextlib.AbstractContextManager[torch.nn.Module]] | None,
        logger: MetricsLogger,
    ) -> None:
        self.config, self.rewards, self.data, self.tokenizer = config, rewards, data, tokenizer
        self.reference, self.logger = reference, logger
        manifest = data.manifest
        self.stop_ids = frozenset(token for token in (manifest.eos_id, manifest.im_end_id) if token is not None)
        self.pad_id = manifest.pad_id
        self.sampling = Sampling(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p)
        self.kept: dict[tuple[int, ...], Rollout] = {}
        self.flat_rollouts = 0  # rollouts in a row whose every group scored alike
        self.sampled_step = -1  # the step whose first rollout's table was logged: one table per step

    def rollout(self, model: torch.nn.Module, batch: Batch, step: int) -> tuple[Batch, Metrics]:
        """The micro-batch's groups, sampled, scored and ready to train on; with `iterations` above 1, the same
        rollout again for the steps after the one that sampled it."""
        generation = step // self.config.iterations
        key = (generation, *map(int, batch.units))
        if key in self.kept:
            return self.kept[key], {}
        if step % self.config.iterations == 0:
            self.kept = {k: v for k, v in self.kept.items() if k[0] == generation}
        made, metrics = self._sample(model, batch, generation, step)
        if self.config.iterations > 1:
            self.kept[key] = made
        return made, metrics

    def _sample(self, model: torch.nn.Module, batch: Batch, generation: int, step: int) -> tuple[Rollout, Metrics]:
        config, group = self.config, self.config.num_generations
        records = [self.data.records[int(unit)] for unit in batch.units for _ in range(group)]
        prompts = [record["ids"] for record in records]
        device = batch.inputs.device
        seed = int(np.random.SeedSequence([config.seed, generation, *map(int, batch.units)]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(seed)
        started = time.perf_counter()
        completions = generate_batch(
            model, prompts, config.max_completion_tokens, self.sampling, self.stop_ids, generator, self.pad_id
        )
        seconds = time.perf_counter() - started
        texts = [self._text(ids) for ids in completions]
        fields = {
            name: [record.get(name) for record in records]
            for name in dict.fromkeys(name for record in records for name in record)
            if name not in ("ids", "prompt", "line")
        }
        scores = score(self.rewards, [record["prompt"] for record in records], texts, completions, fields)
        weights = torch.tensor([reward.weight for reward in self.rewards])
        rewards = (scores.nan_to_num(0.0) * weights).sum(dim=1)
        advantages = group_advantages(rewards, group, config.scale_rewards)
        made = self._batch(prompts, completions, advantages, batch.units, device)
        with torch.no_grad():
            if config.iterations > 1:
                made.old_logps = self._logps(model, made)
            if self.reference is not None:
                with self.reference(model) as reference:
                    made.reference_logps = self._logps(reference, made)
        metrics = self._metrics(scores, rewards, completions, seconds)
        if step % config.sample_every == 0 and step != self.sampled_step:
            self.sampled_step = step
            self._log_samples(step, records, texts, scores, rewards, advantages)
        self._warn_if_flat(float(metrics["frac_reward_zero_std"]) == 1.0, float(rewards.mean()), step)
        return made, {name: value.to(device) for name, value in metrics.items()}

    def _metrics(
        self, scores: torch.Tensor, rewards: torch.Tensor, completions: list[list[int]], seconds: float
    ) -> Metrics:
        """What a rollout tells: its rewards (in all, per function, spread within groups), its lengths, its speed."""
        grouped = rewards.view(-1, self.config.num_generations)
        lengths = torch.tensor([len(ids) for ids in completions], dtype=torch.float32)
        finished = torch.tensor([bool(ids) and ids[-1] in self.stop_ids for ids in completions])
        metrics: Metrics = {
            "reward": rewards.mean(),
            "reward_std": grouped.std(dim=1).mean(),
            "frac_reward_zero_std": (grouped.std(dim=1) == 0).float().mean(),
            "completion_length": lengths.mean(),
            "completion_length_max": lengths.max(),
            "truncated_completions": 1 - finished.float().mean(),
            "rollout_tokens_per_s": torch.tensor(float(lengths.sum()) / max(seconds, 1e-9)),
        }
        for index, reward in enumerate(self.rewards):
            column = scores[:, index]
            metrics[f"rewards/{reward.label}/mean"] = column.nanmean().nan_to_num(0.0)
            metrics[f"rewards/{reward.label}/std"] = column[~column.isnan()].std().nan_to_num(0.0)
        return metrics

    def _warn_if_flat(self, flat: bool, reward: float, step: int) -> None:
        """Say so when `sample_every` rollouts in a row taught nothing: every group's completions scored alike, so
        every advantage is 0 and only the KL term moves the weights (a reward that cannot tell answers apart, an
        answer field that never matches, completions all cut at max_completion_tokens)."""
        self.flat_rollouts = self.flat_rollouts + 1 if flat else 0
        if self.flat_rollouts and self.flat_rollouts % self.config.sample_every == 0:
            _LOG.warning(
                "grpo: the last %d rollouts up to step %d gave no learning signal: every group's completions scored "
                "alike (mean reward %.3f); check the rewards against the samples/ tables",
                self.flat_rollouts,
                step,
                reward,
            )

    def _text(self, ids: list[int]) -> str:
        """What a reward reads: the completion without its stop token, `<think>` and `</think>` included."""
        return self.tokenizer.decode(ids[:-1] if ids and ids[-1] in self.stop_ids else ids, skip_special_tokens=False)

    def _batch(
        self,
        prompts: list[list[int]],
        completions: list[list[int]],
        advantages: torch.Tensor,
        units: np.ndarray | None,
        device: torch.device,
    ) -> Rollout:
        """Prompt and completion right-padded: every row starts at position 0, so no mask beyond the causal one."""
        width = max(len(prompt) + len(completion) for prompt, completion in zip(prompts, completions))
        tokens = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        weights = torch.zeros((len(prompts), width - 1))
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            tokens[row, : len(prompt) + len(completion)] = torch.as_tensor(prompt + completion)
            weights[row, len(prompt) - 1 : len(prompt) + len(completion) - 1] = 1.0
        tokens, weights = tokens.to(device), weights.to(device)
        return Rollout(tokens[:, :-1], tokens[:, 1:], weights, units, advantages.to(device))

    def _logps(self, model: torch.nn.Module, rollout: Rollout) -> torch.Tensor:
        return token_logps(model(rollout.inputs).logits, rollout.targets)

    def _log_samples(
        self,
        step: int,
        records: list[dict],
        texts: list[str],
        scores: torch.Tensor,
        rewards: torch.Tensor,
        advantages: torch.Tensor,
    ) -> None:
        """A table artifact of this rollout's completions beside their prompts, rewards and advantages."""
        table: dict[str, list[Any]] = {
            "step": [step] * len(texts),
            "line": [record["line"] for record in records],
            "prompt": [_shown(record["prompt"]) for record in records],
            "completion": texts,
            "reward": rewards.tolist(),
            "advantage": advantages.tolist(),
        }
        for index, reward in enumerate(self.rewards):
            table[reward.label] = [None if np.isnan(value) else value for value in scores[:, index].tolist()]
        self.logger.table(table, f"samples/step-{step:08d}.json")

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        if not isinstance(batch, Rollout):
            raise TypeError("GRPO trains on its rollouts: the trainer must call rollout first")
        logits = model(batch.inputs).logits
        logps = token_logps(logits, batch.targets)
        old = batch.old_logps if batch.old_logps is not None else logps.detach()
        config = self.config
        loss, metrics = grpo_loss(
            logps,
            old,
            batch.reference_logps,
            batch.advantages,
            batch.weights,
            config.beta,
            config.epsilon,
            config.epsilon_high or config.epsilon,
            config.loss_type,
            config.max_completion_tokens,
        )
        with torch.no_grad():
            probabilities = torch.softmax(logits.float(), dim=-1)
            entropy = -(probabilities * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
            metrics["entropy"] = (entropy * batch.weights).sum() / batch.weights.sum().clamp(min=1)
        return loss, metrics


def _shown(prompt: Any) -> str:
    """A prompt as a table cell: its text, or a conversation's last turn."""
    return prompt if isinstance(prompt, str) else str(prompt[-1].get("content", ""))


def grpo_prompts(prompts: str | Path, workspace: str | Path, config: GrpoConfig) -> Path:
    """The prompts file encoded with the starting model's tokenizer and chat template, in the workspace: what
    `train_model` trains a GrpoConfig on."""
    if not config.init_run_id:
        raise ValueError("GRPO starts from a model that can already answer: set init_run_id (--init) to an SFT run")
    needs = {field for reward in load_rewards(config.rewards, config.reward_weights, 1) for field in reward.needs}
    settings = PromptSettings(
        config.prompt_field,
        config.answer_field,
        config.think,
        config.max_prompt_tokens,
        tuple(sorted(needs)),
        config.max_skipped_share,
    )
    with tempfile.TemporaryDirectory() as scratch:
        located = locate_model(config.init_run_id, Path(workspace), Path(scratch))
        return encoded_prompts(prompts, located.directory, workspace, settings)


# Below this share of reference solutions scored right, the accuracy reward is misreading the file's answers.
REFERENCE_SHARE_WARNING = 0.95


def reference_check(encoded: str | Path, config: GrpoConfig) -> ReferenceCheck | None:
    """The accuracy reward on the encoded prompts' own reference solutions, run before training (None when the
    config does not use the built-in accuracy reward)."""
    return check_references(read_prompts(encoded)) if "accuracy" in config.rewards else None


def reference_warning(check: ReferenceCheck, prompts: str) -> str | None:
    """One line when the accuracy reward scores too few of the references right, naming where to look."""
    if check.share >= REFERENCE_SHARE_WARNING:
        return None
    lines = ", ".join(map(str, check.failed_lines[:5]))
    return (
        f"{prompts}: the accuracy reward scores only {check.full_marks} of {check.records} reference solutions "
        f"right ({check.share:.0%}; first at lines {lines}): it would train toward wrong answers; check that "
        "answer_field names the reference answer and that those answers are math or choice letters"
    )


@register
class Grpo(Method):
    name = "grpo"
    config = GrpoConfig
    data_formats = ("prompts",)
    data_command = "grpo --prompts FILE"

    def check(self, config: GrpoConfig, data: TrainingData) -> None:
        super().check(config, data)
        if not config.init_run_id:
            raise ValueError("GRPO starts from a model that can already answer: set init_run_id (--init) to an SFT run")

    def steps_per_batch(self, config: GrpoConfig) -> int:
        return config.iterations

    def sequences_per_batch(self, config: GrpoConfig) -> int:
        return config.batch_size * config.num_generations

    def objective(self, config: GrpoConfig, setup: Setup) -> Objective:
        """The rewards loaded, and the reference: none at beta 0, the adapters switched off under LoRA, else a
        frozen copy of the starting weights."""
        rewards = load_rewards(config.rewards, config.reward_weights, config.max_completion_tokens)
        reference = None
        if config.beta and config.lora is not None:
            reference = _without_adapters
        elif config.beta:
            frozen = frozen_model(setup.initial, setup.device)
            reference = lambda model: contextlib.nullcontext(frozen)  # noqa: E731
        tokenizer = load_tokenizer(setup.data.manifest.tokenizer_dir)
        return GroupRelative(config, rewards, setup.data, tokenizer, reference, setup.logger)


@contextlib.contextmanager
def _without_adapters(model: torch.nn.Module):
    """The LoRA model as its base: the reference costs no second copy of the weights."""
    with model.disable_adapter():
        yield model
