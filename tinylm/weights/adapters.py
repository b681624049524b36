"""LoRA adapters through PEFT: wrap a model, take its adapter weights alone, fold them back into the base.

PEFT works on any `torch.nn.Module` with named linear layers, so the tinylm transformer
needs no Hugging Face wrapper: adapters go on the layers named in `target_modules`, the
base weights are frozen, and a checkpoint holds the adapters only (megabytes, where
the model with its optimizer state is hundreds). Imported only where LoRA is used:
PEFT brings `transformers` with it, seconds of import time.
"""

from __future__ import annotations

import torch

from tinylm.config import LoraConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer


def with_adapters(model: Transformer, settings: LoraConfig) -> torch.nn.Module:
    """The model with fresh adapters on its target layers (PEFT's init: the update starts at zero), base frozen."""
    import peft

    lora = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
    )
    return peft.get_peft_model(model, lora)


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    import peft

    return {name: tensor.detach().clone() for name, tensor in peft.get_peft_model_state_dict(model).items()}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    import peft

    result = peft.set_peft_model_state_dict(model, state)
    if result.unexpected_keys:
        raise ValueError(f"the adapter checkpoint does not fit this model: unexpected {result.unexpected_keys[:3]}")


def merged_weights(
    base: dict[str, torch.Tensor], config: ModelConfig, settings: dict, adapters: dict[str, torch.Tensor]
) -> dict:
    """The base weights with the adapters folded in (W + B A x alpha / rank): a plain model's state dict."""
    model = Transformer(config)
    model.load_state_dict(base)
    wrapped = with_adapters(model, LoraConfig(**settings))
    load_adapter_state(wrapped, adapters)
    return wrapped.merge_and_unload().state_dict()
