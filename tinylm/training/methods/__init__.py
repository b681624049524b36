"""Training methods, one module each: pretraining and SFT (the default), DPO, distillation, GRPO.

Importing the package registers them; `method_for(config)` finds the one a config selects.
See interface.py for what a method is and how to add one.
"""

from tinylm.training.methods import distill, dpo, grpo, pretrain
from tinylm.training.methods.interface import Method, Objective, Setup, config_classes, method_for, register

__all__ = [
    "Method",
    "Objective",
    "Setup",
    "config_classes",
    "distill",
    "dpo",
    "grpo",
    "method_for",
    "pretrain",
    "register",
]
