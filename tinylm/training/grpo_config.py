"""GRPO's settings, apart from its method (`training/methods/grpo.py`): pydantic and the
standard library only, so the CLI's parser, the deployment forms and the config reference build them without
importing torch (as TRL keeps `dpo_config.py` apart from `dpo_trainer.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tinylm.config import LearningRate, MinLearningRate, SamplePrompts, TrainConfig, WarmupSteps
from tinylm.registry import Input, register_method

# The rewards built into training/rewards.py, named here so the settings can list them without importing torch.
BUILT_IN_REWARDS = ("accuracy", "think_format", "length")
LossType = Literal["grpo", "dr_grpo", "dapo"]


class GrpoConfig(TrainConfig):
    """GRPO on prompts with verifiable rewards, starting from an SFT run (`init_run_id`)."""

    learning_rate: LearningRate = 1e-6
    min_learning_rate: MinLearningRate = 1e-7
    warmup_steps: WarmupSteps = 0
    sample_prompts: SamplePrompts = []
    batch_size: int = Field(4, ge=1, description="prompts per micro-batch; each is completed num_generations times")
    seq_len: int = Field(
        384,
        ge=8,
        description="set by GRPO itself to max_prompt_tokens + max_completion_tokens, the longest sequence trained",
    )
    eval_batches: int = Field(0, ge=0, le=0, description="GRPO has no validation loss: its rewards are its measure")
    num_generations: int = Field(8, ge=2, description="completions sampled per prompt: the group rewards compare")
    max_prompt_tokens: int = Field(
        256, ge=1, description="a prompt longer than this (chat template included) is skipped, counted"
    )
    max_completion_tokens: int = Field(128, ge=1, description="tokens generated per completion at most")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the rollouts (1 = off)")
    top_k: int = Field(0, ge=0, description="top-k sampling of the rollouts (0 = off)")
    rewards: list[str] = Field(
        ["accuracy"],
        min_length=1,
        description=f"reward functions: built in ({', '.join(BUILT_IN_REWARDS)}) or module:function / file.py:function",
    )
    reward_weights: list[float] | None = Field(None, description="one weight per reward (None = all 1)")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="divide advantages by the group's reward std, the batch's, or not at all (Dr. GRPO)",
    )
    loss_type: LossType = Field(
        "grpo",
        description="grpo: mean over each completion's tokens, then over completions; dapo: mean over all tokens; "
        "dr_grpo: sum over tokens / (completions x max_completion_tokens)",
    )
    beta: float = Field(0.04, ge=0, description="weight of the KL penalty to the reference (0 = no reference)")
    epsilon: float = Field(
        0.2, gt=0, lt=1, description="the policy ratio is clipped to [1 - epsilon, 1 + epsilon_high]"
    )
    epsilon_high: float | None = Field(None, gt=0, description="upper clip (DAPO's clip-higher); None = epsilon")
    iterations: int = Field(
        1, ge=1, description="optimizer steps per rollout (mu); above 1 the ratio is to the rollout's policy"
    )
    prompt_field: str | None = Field(
        None, description="the records' field holding the prompt (text or messages); None = prompt, else messages"
    )
    answer_field: str | None = Field(
        None,
        description="the records' field holding the reference answer or worked solution (CMATH: golden); "
        "None = answer, else solution",
    )
    think: bool = Field(
        False, description="open each reply with the think-start token, so the model reasons first (SFT'd to reason)"
    )
    sample_every: int = Field(50, ge=1, description="log a table of sample completions and rewards every N steps")
    max_skipped_share: float = Field(
        0.5, ge=0, le=1, description="fail when more than this share of the prompt records is skipped"
    )

    @model_validator(mode="after")
    def _sequences(self) -> GrpoConfig:
        """seq_len is what a prompt and its completion take at most; a checkpoint must fall between rollouts."""
        if "seq_len" in self.model_fields_set and self.seq_len != self.max_prompt_tokens + self.max_completion_tokens:
            raise ValueError("GRPO sets seq_len itself: set max_prompt_tokens and max_completion_tokens instead")
        self.__dict__["seq_len"] = self.max_prompt_tokens + self.max_completion_tokens
        if self.checkpoint_every and self.checkpoint_every % self.iterations:
            raise ValueError(
                f"checkpoint_every {self.checkpoint_every} must be a multiple of iterations {self.iterations}: a "
                "checkpoint inside a rollout's iterations could not be resumed exactly"
            )
        if self.think_token_weight != 1:
            raise ValueError("think_token_weight weighs SFT targets; GRPO's loss weighs every completion token alike")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards")
        return self


register_method(
    "grpo",
    "Reinforce an SFT model with verifiable rewards (GRPO): sample groups of completions, score, compare "
    "(optionally LoRA).",
    config="tinylm.training.grpo_config:GrpoConfig",
    method="tinylm.training.methods.grpo",
    data=Input(
        "--prompts",
        "JSON Lines of records with a prompt (or messages) and the fields the rewards read (answer)",
    ),
    flow="tinylm.flows.tuning:grpo_flow",
    prepare="tinylm.training.methods.grpo:grpo_prompts",
    aliases={"rewards": "--reward"},
    exclude=("seq_len", "eval_batches", "think_token_weight"),
)
