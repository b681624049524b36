"""Distillation's settings, apart from its method (`training/methods/distill.py`): pydantic and the
standard library only, so the CLI's parser, the deployment forms and the config reference build them without
importing torch (as TRL keeps `dpo_config.py` apart from `dpo_trainer.py`)."""

from __future__ import annotations

from pydantic import Field

from tinylm.config import TrainConfig


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
