"""README documents every config field, so the parameter tables cannot silently fall behind."""

import dataclasses
import typing
from pathlib import Path

from tinylm.config import (
    ChatDataConfig,
    CorpusConfig,
    PipelineConfig,
    RefreshConfig,
    ShardsConfig,
    TokenizerConfig,
    TrainConfig,
)
from tinylm.model.config import ModelConfig
from tinylm.training.methods.distill import DistillConfig
from tinylm.training.methods.dpo import DpoConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _fields(model) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for annotation in (field.annotation, *typing.get_args(field.annotation)):  # `LoraConfig | None` too
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                names |= _fields(annotation)
    return names


def test_every_config_field_is_in_the_readme():
    fields = set().union(
        *(
            _fields(m)
            for m in (PipelineConfig, CorpusConfig, TokenizerConfig, ShardsConfig, TrainConfig, ChatDataConfig, RefreshConfig)
            + (DpoConfig, DistillConfig)
        )
    )
    fields |= {f.name for f in dataclasses.fields(ModelConfig)}
    missing = sorted(name for name in fields if f"`{name}`" not in README and f"{name}`" not in README)
    assert not missing, f"README does not document: {missing}"
