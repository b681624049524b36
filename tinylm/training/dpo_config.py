"""DPO's settings, apart from its method (`training/methods/dpo.py`): pydantic and the
standard library only, so the CLI's parser, the deployment forms and the config reference build them without
importing torch (as TRL keeps `dpo_config.py` apart from `dpo_trainer.py`)."""

from __future__ import annotations

from pydantic import Field

from tinylm.config import LearningRate, MinLearningRate, SamplePrompts, TrainConfig, WarmupSteps
from tinylm.registry import Input, register_method


class DpoConfig(TrainConfig):
    """Direct preference optimisation on chat-data DPO pairs, starting from an SFT run (`init_run_id`)."""

    learning_rate: LearningRate = 5e-6
    min_learning_rate: MinLearningRate = 5e-7
    warmup_steps: WarmupSteps = 10
    sample_prompts: SamplePrompts = []
    beta: float = Field(
        0.1, gt=0, description="how far the policy may move from the reference: the sigmoid loss's temperature"
    )
    reference_run_id: str | None = Field(
        None,
        description="the frozen reference model (a run id or any model reference); None = init_run_id, where the "
        "policy starts",
    )
    precompute_reference: bool = Field(
        True,
        description="compute the reference's log-probabilities once per pair, shard by shard, and keep them beside the "
        "data: no reference model in memory while training",
    )


register_method(
    "dpo",
    "Preference-optimise an SFT model on chat-data DPO pairs (DPO) against a frozen reference, optionally LoRA.",
    config="tinylm.training.dpo_config:DpoConfig",
    method="tinylm.training.methods.dpo",
    data=Input("--pairs", "directory of `tinylm chat-data --format dpo` output"),
)
