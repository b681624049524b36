"""Training methods, one module each: pretraining and SFT (the default), DPO, distillation, GRPO.

`method_for(config)` finds the one a config selects, importing the method module each registered command names
(tinylm/registry.py), a plugin's too. See interface.py for what a method is and how to add one.
"""

from tinylm.training.methods.interface import Method, Objective, Setup, config_classes, method_for, register

__all__ = ["Method", "Objective", "Setup", "config_classes", "method_for", "register"]
