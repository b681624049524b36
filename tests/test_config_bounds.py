"""Every number a user can set is bounded: a value outside is refused naming its field, wherever it comes from (YAML,
a flag, the Prefect form), before any work; settings that must agree with each other are checked together."""

import dataclasses
import os
import typing

import annotated_types
import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tinylm import config
from tinylm.cli import main
from tinylm.flows.session.environment import TEMPORARY_MARK
from tinylm.inference.settings import ServerSettings
from tinylm.model.config import ModelConfig
from tinylm.training.distill_config import DistillConfig
from tinylm.training.dpo_config import DpoConfig
from tinylm.training.methods import config_classes

SETTINGS = [model for model in vars(config).values() if isinstance(model, type) and issubclass(model, config._Settings)]
SETTINGS += [kind for kind in config_classes().values() if kind not in SETTINGS]
REQUIRED: dict[type, dict] = {DistillConfig: {"teacher_run_id": "run"}}
NUMBERS = (int, float)


def numeric(annotation: object) -> type | None:
    """int or float, also when optional; None for anything else (bool is not a number a user tunes)."""
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, type(int | None))
        else (annotation,)
    )
    found = [option for option in options if option in NUMBERS]
    return found[0] if found else None


def fields_of(model: type) -> dict[str, FieldInfo]:
    if dataclasses.is_dataclass(model):
        hints = typing.get_type_hints(model, include_extras=True)
        return {field.name: FieldInfo.from_annotation(hints[field.name]) for field in dataclasses.fields(model)}
    return model.model_fields


def below(info: FieldInfo, kind: type) -> object:
    """A value just under the field's lower bound, or None when it has none."""
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge):
            return bound.ge - (1 if kind is int else 1e-6)
        if isinstance(bound, annotated_types.Gt):
            return bound.gt
    return None


def above(info: FieldInfo, kind: type) -> object:
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Le):
            return bound.le + (1 if kind is int else 1e-6)
        if isinstance(bound, annotated_types.Lt):
            return bound.lt
    return None


def cases() -> list[tuple[type, str, str, object]]:
    """(model, field, which bound, a value beyond it) for every numeric field of every config model."""
    found = []
    for model in [*SETTINGS, ServerSettings, ModelConfig]:
        for name, info in fields_of(model).items():
            kind = numeric(info.annotation)
            if kind is None:
                continue
            found.append((model, name, "lower", below(info, kind)))
            if above(info, kind) is not None:
                found.append((model, name, "upper", above(info, kind)))
    return found


def refuse(model: type, name: str, value: object) -> ValidationError:
    """Validate `value` for the field as a user's YAML or form would give it; ModelConfig through TrainConfig."""
    if model is ModelConfig:
        model, settings, path = config.TrainConfig, {"model": {name: value}}, ("model", name)
    else:
        settings, path = {name: value}, (name,)
    assert issubclass(model, BaseModel)
    with pytest.raises(ValidationError) as refused:
        model.model_validate(REQUIRED.get(model, {}) | settings)
    assert [error["loc"] for error in refused.value.errors()] == [path], refused.value
    return refused.value


@pytest.mark.parametrize(
    ("model", "name", "bound", "value"), cases(), ids=lambda case: getattr(case, "__name__", str(case))
)
def test_every_numeric_field_has_bounds_and_a_value_beyond_them_is_refused_by_name(model, name, bound, value):
    assert value is not None, f"{model.__name__}.{name} has no lower bound: give it the one that makes sense"
    refuse(model, name, value)


def test_the_walk_covers_the_fields_the_issue_found():
    walked = {(model.__name__, name) for model, name, _, _ in cases()}
    for field in ("learning_rate", "min_learning_rate", "warmup_steps", "weight_decay", "grad_clip"):
        assert ("TrainConfig", field) in walked and ("DpoConfig", field) in walked
    assert {("ModelConfig", "dim"), ("ServerSettings", "max_running"), ("FilterConfig", "max_digit_share")} <= walked
    assert len(walked) > 100


@pytest.mark.parametrize(
    ("model", "settings", "words"),
    [
        (
            config.TrainConfig,
            {"learning_rate": 0.001, "min_learning_rate": 0.01},
            "min_learning_rate 0.01 is above learning_rate 0.001",
        ),
        (DpoConfig, {"min_learning_rate": 1e-3}, "min_learning_rate 0.001 is above learning_rate 5e-06"),
        (config.FilterConfig, {"min_chars": 500, "max_chars": 100}, "min_chars 500 is above max_chars 100"),
        (config.TrainConfig, {"model": {"dim": 100, "n_heads": 8}}, "dim 100 is not divisible by n_heads 8"),
        (config.TrainConfig, {"model": {"dim": 24, "n_heads": 8, "n_kv_heads": 2}}, "dim / n_heads is 3, odd"),
        (config.TrainConfig, {"model": {"n_heads": 8, "n_kv_heads": 3}}, "n_heads 8 is not a multiple of n_kv_heads 3"),
        (
            config.TrainConfig,
            {"model": {"moe": True, "experts_per_token": 5}},
            "experts_per_token 5 is more than n_routed_experts 4",
        ),
    ],
)
def test_settings_that_must_agree_are_checked_together(model, settings, words):
    with pytest.raises(ValidationError, match=words):
        model.model_validate(settings)


def test_the_cli_and_yaml_refuse_with_the_fields_name(tmp_path, capsys):
    """Refused before any Prefect server is started for the command (one takes seconds to boot)."""
    settings = tmp_path / "train.yaml"
    settings.write_text("min_learning_rate: -0.05\n", encoding="utf-8")
    assert main(["train", "--shards", str(tmp_path), "--config", str(settings)]) == 1
    assert "min_learning_rate: Input should be greater than or equal to 0" in capsys.readouterr().err
    settings.write_text("learning_rate: 0\n", encoding="utf-8")
    assert main(["train", "--shards", str(tmp_path), "--config", str(settings)]) == 1
    assert "learning_rate: Input should be greater than 0" in capsys.readouterr().err
    assert TEMPORARY_MARK not in os.environ


def test_the_prefect_form_carries_every_lower_bound():
    """Prefect renders a flow's parameters from their JSON schema: a bound there is refused in the form, before a
    run."""
    from prefect.utilities.callables import parameter_schema

    from tinylm.flows.pipeline import pipeline_flow

    schema = parameter_schema(pipeline_flow).model_dump()
    definitions = schema["definitions"]
    unbounded = []
    for name, definition in definitions.items():
        for field, spec in definition.get("properties", {}).items():
            options = spec.get("anyOf", [spec])
            numbers = [option for option in options if option.get("type") in ("integer", "number")]
            if numbers and not any("minimum" in option or "exclusiveMinimum" in option for option in numbers):
                unbounded.append(f"{name}.{field}")
    assert {"TrainConfig", "ModelConfig", "FilterConfig"} <= set(definitions) and not unbounded, unbounded


def test_a_warmup_as_long_as_the_run_becomes_a_tenth_of_it_and_says_so(shards_dir, workspace, caplog):
    """Total steps are known only from the data, so no config check can see this; a scheduled refresh with a few new
    files meets it, and should train rather than fail or crawl at a learning rate that never rises."""
    from mlflow.tracking import MlflowClient

    from tests.helpers import tiny_train_config
    from tinylm.tracking.store import tracking_uri
    from tinylm.training.trainer import train_model

    result = train_model(
        shards_dir, workspace, tiny_train_config(max_shards=2, max_steps_per_shard=10, warmup_steps=50)
    )
    assert "warmup_steps 50 is not below this run's 20 optimizer steps: warming up over 2 steps instead" in caplog.text
    assert MlflowClient(tracking_uri(workspace)).get_run(result["run_id"]).data.params["warmup_steps"] == "2"
