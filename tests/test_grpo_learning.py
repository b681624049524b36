"""GRPO end to end on CPU: a tiny model SFT'd briefly on single-digit addition answers some sums right; GRPO with
the built-in accuracy reward raises its mean reward, logs what a user reads in MLflow, and resumes exactly after
SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import make_chat_data, tiny_train_config
from tinylm.config import ChatDataConfig
from tinylm.model.config import ModelConfig
from tinylm.storage.manifest import read_manifest
from tinylm.training.methods.grpo import GrpoConfig, grpo_prompts
from tinylm.training.trainer import train_model

pytestmark = pytest.mark.slow

SUMS = [(a, b) for a in range(10) for b in range(10)]
MODEL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)


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
    tokenizer = read_manifest(shards_dir)["tokenizer_dir"]
    make_chat_data([source], tokenizer, data / "sft", ChatDataConfig(max_seq_len=32, validation_fraction=0))
    config = tiny_train_config(
        model=MODEL, seq_len=31, batch_size=10, epochs=SFT_EPOCHS, max_shards=None, max_steps_per_shard=None,
        eval_batches=0, sample_tokens=0, learning_rate=3e-3, warmup_steps=5,
    )  # fmt: skip
    run_id = train_model(data / "sft", module_workspace, config)["run_id"]
    prompts = write_jsonl(data / "prompts.jsonl", [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in SUMS])
    return run_id, prompts


SFT_EPOCHS = 6


def grpo_config(init: str, **overrides: object) -> GrpoConfig:
    settings = dict(
        init_run_id=init, model=MODEL, batch_size=4, num_generations=8, max_prompt_tokens=24, max_completion_tokens=6,
        learning_rate=2e-3, min_learning_rate=2e-3, beta=0.0, log_every=1, sample_every=100, epochs=3,
    )  # fmt: skip
    return GrpoConfig(**(settings | overrides))


def test_grpo_raises_the_mean_reward_of_an_sft_model(adder, module_workspace):
    init, prompts = adder
    config = grpo_config(init)
    result = train_model(grpo_prompts(prompts, module_workspace, config), module_workspace, config)
    client = MlflowClient()
    rewards = [m.value for m in sorted(client.get_metric_history(result["run_id"], "reward"), key=lambda m: m.step)]
    first, last = sum(rewards[:15]) / 15, sum(rewards[-15:]) / 15
    print(f"reward {first:.3f} -> {last:.3f} over {len(rewards)} steps")
    assert last > first + 0.2
