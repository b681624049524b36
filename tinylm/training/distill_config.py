"""Distillation's settings, apart from its method (`training/methods/distill.py`): pydantic and the
standard library only, so the CLI's parser, the deployment forms and the config reference build them without
importing torch (as TRL keeps `dpo_config.py` apart from `dpo_trainer.py`)."""

from __future__ import annotations

from pydantic import Field

from tinylm.config import TrainConfig
from tinylm.registry import Input, register_method


class DistillConfig(TrainConfig):
    """White-box distillation: a student learns a teacher's token distributions, mixed with the data's own loss."""

    teacher_run_id: str = Field(
        ..., description="the teacher (a run id or any model reference); same tokenizer as the data"
    )
    temperature: float = Field(
        1.0, gt=0, description="softens both distributions before the KL divergence (scaled back by T^2)"
    )
    kl_weight: float = Field(
        0.5, ge=0, le=1, description="share of the loss that is the KL to the teacher; the rest is cross entropy"
    )


register_method(
    "distill",
    "Distil a teacher run into a student: KL to its token distributions, mixed with the data's cross entropy.",
    config="tinylm.training.distill_config:DistillConfig",
    method="tinylm.training.methods.distill",
    data=Input("--data", "chat data (SFT) or token shards, in the teacher's tokenizer"),
    aliases={"teacher_run_id": "--teacher"},
)
