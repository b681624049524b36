"""GRPO end to end on CPU: a tiny model SFT'd briefly on single-digit addition answers some sums right; GRPO with
the built-in accuracy reward raises its mean reward, logs what a user reads in MLflow, and resumes exactly after
SIGKILL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import killed_and_run_again, make_chat_data, tiny_train_config
from tinylm.config import ChatDataConfig, LoraConfig
from tinylm.flows.tuning import grpo_flow
from tinylm.model.config import ModelConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.training.methods.grpo import GrpoConfig, grpo_prompts, reference_check, reference_warning
from tinylm.training.trainer import train_model

pytestmark = pytest.mark.slow

SUMS = [(a, b) for a in range(10) for b in range(10)]
MODEL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
SFT_EPOCHS = 40  # enough to answer about a third of the sums right (read strictly): room for GRPO to show


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), "utf-8")
    return path


@pytest.fixture(scope="module")
def adder(prefect_api, shards_dir, module_workspace, tmp_path_factory) -> tuple[str, Path]:
    """An SFT run that has seen every sum a few times (right on some, not all), and a prompts file of them."""
    data = tmp_path_factory.mktemp("addition")
    conversations = [
        {"messages": [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": str(a + b)}]}
        for a, b in SUMS
    ]
    source = write_jsonl(data / "sums.jsonl", conversations)
    tokenizer = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    make_chat_data([source], tokenizer, data / "sft", ChatDataConfig(max_seq_len=32, validation_fraction=0))
    config = tiny_train_config(
        model=MODEL, seq_len=31, batch_size=10, epochs=SFT_EPOCHS, max_shards=None, max_steps_per_shard=None,
        eval_batches=0, sample_tokens=0, learning_rate=3e-3, warmup_steps=5,
    )  # fmt: skip
    run_id = train_model(data / "sft", module_workspace, config)["run_id"]
    prompts = write_jsonl(data / "prompts.jsonl", [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in SUMS])
    return run_id, prompts


def grpo_config(init: str, **overrides: object) -> GrpoConfig:
    settings = dict(
        init_run_id=init, model=MODEL, batch_size=4, num_generations=8, max_prompt_tokens=24, max_completion_tokens=6,
        learning_rate=5e-4, min_learning_rate=5e-4, log_every=1, sample_every=100, epochs=20,
    )  # fmt: skip
    return GrpoConfig(**(settings | overrides))


def history(client: MlflowClient, run_id: str, name: str) -> list[float]:
    return [metric.value for metric in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]


def test_grpo_raises_the_mean_reward_of_an_sft_model_and_logs_what_users_read(adder, module_workspace):
    init, prompts = adder
    config = grpo_config(init)
    result = train_model(grpo_prompts(prompts, module_workspace, config), module_workspace, config)
    client = MlflowClient()
    rewards = history(client, result["run_id"], "reward")
    assert len(rewards) == result["steps"] == 500
    first, last = sum(rewards[:100]) / 100, sum(rewards[-100:]) / 100
    assert last > first + 0.1, f"mean reward {first:.3f} over the first 100 steps, {last:.3f} over the last 100"
    assert history(client, result["run_id"], "rewards/accuracy/mean") == rewards, "one reward of weight 1"
    for name in ("reward_std", "kl", "completion_length", "clip_ratio", "entropy", "frac_reward_zero_std"):
        assert len(history(client, result["run_id"], name)) == 500, name
    assert history(client, result["run_id"], "kl")[-1] > 0, "the policy moved away from its reference"
    assert all(1 <= length <= 6 for length in history(client, result["run_id"], "completion_length"))
    tables = [item.path for item in client.list_artifacts(result["run_id"], "samples")]
    assert tables == [f"samples/step-{step:08d}.json" for step in range(0, 500, 100)]
    table = json.loads(Path(client.download_artifacts(result["run_id"], tables[-1])).read_text("utf-8"))
    assert table["columns"] == ["step", "line", "prompt", "completion", "reward", "advantage", "accuracy"]
    assert len(table["data"]) == 4 * 8 and all(row[2].endswith("=") for row in table["data"])


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8)], ids=["full", "lora"])
def test_grpo_killed_mid_run_and_run_again_ends_with_the_weights_of_one_never_killed(adder, module_workspace, lora):
    """Two iterations per rollout and a KL term: the resumed run must sample the same completions (the rollout's
    generator is seeded by its step) against the same reference."""
    init, prompts = adder
    config = grpo_config(init, epochs=1, iterations=2, checkpoint_every=4, lora=lora, learning_rate=1e-3)
    data_dir = grpo_prompts(prompts, module_workspace, config)
    reference, resumed, expected, actual, _ = killed_and_run_again(data_dir, module_workspace, config)
    assert resumed["resumed_from_step"] and resumed["steps"] == reference["steps"] == 50
    assert expected["model"].keys() == actual["model"].keys()
    assert all(torch.equal(expected["model"][name], actual["model"][name]) for name in expected["model"])


def test_a_reward_that_raises_fails_the_run_with_its_name(adder, module_workspace, tmp_path):
    init, prompts = adder
    source = tmp_path / "rewards.py"
    source.write_text("def needs_level(prompts, completions, level, **_):\n    return [1.0] * len(completions)\n")
    config = grpo_config(init, rewards=[f"{source}:needs_level"], epochs=1)
    with pytest.raises(RuntimeError, match="needs_level failed: TypeError: .*level"):
        train_model(grpo_prompts(prompts, module_workspace, config), module_workspace, config)


def test_the_grpo_flow_trains_once_and_a_repeat_returns_the_finished_run(adder, module_workspace, caplog):
    init, prompts = adder
    config = grpo_config(init, epochs=1, run_name=None)
    with caplog.at_level(logging.INFO):
        first = grpo_flow(config, str(prompts), str(module_workspace))
    checked = [record.getMessage() for record in caplog.records if "reference solutions" in record.getMessage()]
    assert checked == [f"grpo: accuracy scores {len(SUMS)} of {len(SUMS)} reference solutions 1.0"]
    encoded = grpo_prompts(prompts, module_workspace, config) / "manifest.json"
    written = encoded.stat().st_mtime_ns
    again = grpo_flow(config, str(prompts), str(module_workspace))
    assert not first["reused"] and again["reused"] and again["run_id"] == first["run_id"]
    run = MlflowClient().get_run(first["run_id"])
    assert run.info.run_name == "grpo" and run.data.tags["tinylm.stage"] == "grpo"
    assert run.data.params["num_generations"] == "8" and run.data.params["rewards"] == "['accuracy']"
    assert encoded.stat().st_mtime_ns == written, "the prompts were encoded once"


def test_rewards_that_cannot_tell_completions_apart_are_reported_not_silent(adder, module_workspace, tmp_path, caplog):
    init, prompts = adder
    source = tmp_path / "flat.py"
    source.write_text("def same(prompts, completions, **_):\n    return [1.0] * len(completions)\n", "utf-8")
    config = grpo_config(init, rewards=[f"{source}:same"], epochs=1, sample_every=10)
    with caplog.at_level(logging.WARNING, logger="tinylm.training.methods.grpo"):
        train_model(grpo_prompts(prompts, module_workspace, config), module_workspace, config)
    said = [record.getMessage() for record in caplog.records if "no learning signal" in record.getMessage()]
    assert len(said) == 2 and "last 10 rollouts up to step 9" in said[0] and "mean reward 1.000" in said[0]


def test_a_prompt_file_whose_references_the_reward_misreads_is_warned_of_before_training(adder, module_workspace):
    """Solutions that state another answer than the record's `answer`: the check GRPO runs before training finds
    them by line, and the warning names the setting to look at."""
    init, prompts = adder
    records = [json.loads(line) for line in prompts.read_text("utf-8").splitlines()][:20]
    for index, record in enumerate(records):
        wrong = index % 4 == 0
        record["solution"] = (
            f"{record['prompt']}{int(record['answer']) + wrong}。答案是 {int(record['answer']) + wrong}"
        )
    misread = write_jsonl(module_workspace / "misread.jsonl", records)
    config = grpo_config(init, epochs=1)
    check = reference_check(grpo_prompts(misread, module_workspace, config), config)
    assert (check.records, check.full_marks, check.failed_lines[:2]) == (20, 15, (1, 5))
    assert "scores only 15 of 20 reference solutions right (75%; first at lines 1, 5, 9, 13, 17)" in reference_warning(
        check, str(misread)
    )
