"""A config field is a flag: derived from the models, overriding the YAML, meeting the same bounds."""

from __future__ import annotations

import argparse

import pytest
from pydantic import BaseModel, Field, ValidationError

from tinylm.cli import build_parser
from tinylm.cli_flags import add_config_flags, configured
from tinylm.config import PipelineConfig, TrainConfig


def settings_of(*argv: str) -> BaseModel:
    args = build_parser(argv[0]).parse_args(list(argv))
    return args.settings(args)


def test_every_field_a_flag_can_spell_is_one_nested_fields_with_dots(tmp_path):
    config = settings_of(
        "train", "--shards", "s", "--learning-rate", "3e-4", "--model.dim", "64", "--model.n-heads", "4",
        "--no-compile", "--sample-prompts", "Hello", "你好", "--lora.rank", "4", "--init-run-id", "0" * 32,
    )  # fmt: skip
    assert isinstance(config, TrainConfig)
    assert (config.learning_rate, config.model.dim, config.model.n_heads, config.compile) == (3e-4, 64, 4, False)
    assert config.sample_prompts == ["Hello", "你好"] and config.lora is not None and config.lora.rank == 4


def test_flags_override_the_yaml_and_keep_its_other_settings(tmp_path):
    yaml = tmp_path / "pipeline.yaml"
    yaml.write_text("inputs: [a.txt]\ntrain:\n  learning_rate: 0.002\n  batch_size: 3\ntokenizer:\n  vocab_size: 900\n")
    config = settings_of("pipeline", "--config", str(yaml), "--train.batch-size", "5", "--restart")
    assert isinstance(config, PipelineConfig)
    assert (config.train.learning_rate, config.train.batch_size, config.train.restart) == (0.002, 5, True)
    assert config.tokenizer.vocab_size == 900 and config.inputs == ["a.txt"]


def test_the_older_names_are_aliases():
    run = "0123456789abcdef0123456789abcdef"
    assert settings_of("train", "--shards", "s", "--init", run, "--resume", run, "--lora-rank", "8") == settings_of(
        "train", "--shards", "s", "--init-run-id", run, "--resume-run-id", run, "--lora.rank", "8"
    )
    evaluated = settings_of("eval", "--model", "m", "--data", "a", "--data", "b", "--benchmark", "t")
    assert (evaluated.perplexity_data, evaluated.benchmarks) == (["a", "b"], ["t"])
    assert settings_of("convert", "--input", "i", "--output", "o", "--config", "tw2s").opencc_config == "tw2s"


def test_a_flag_meets_the_fields_bounds_and_zero_is_not_absent():
    with pytest.raises(ValidationError, match="learning_rate"):
        settings_of("train", "--shards", "s", "--learning-rate", "-0.05")
    assert settings_of("train", "--shards", "s", "--warmup-steps", "0").warmup_steps == 0


def test_the_servers_api_key_is_never_a_flag(monkeypatch):
    with pytest.raises(SystemExit):
        build_parser("serve").parse_args(["serve", "--model", "m", "--api-key", "secret"])
    monkeypatch.setenv("TINYLM_API_KEY", "from-the-environment")
    assert settings_of("serve", "--model", "m", "--request-timeout", "5").api_key == "from-the-environment"


def test_a_new_field_is_a_new_flag_with_its_description_and_default():
    class Section(BaseModel):
        depth: int = Field(2, ge=1, description="how deep")

    class Settings(BaseModel):
        mode: str = Field("fast", description="how to run")
        section: Section = Section()
        table: dict[str, int] = Field({}, description="set in the YAML: no flag spells a mapping")

    parser = argparse.ArgumentParser()
    add_config_flags(parser, Settings)
    flags = {option: action for action in parser._actions for option in action.option_strings}
    assert {"--mode", "--section.depth"} <= flags.keys() and "--table" not in flags
    assert flags["--section.depth"].help == "how deep (default: 2)"
    args = parser.parse_args(["--section.depth", "5"])
    assert configured(Settings, args) == Settings(section=Section(depth=5))
