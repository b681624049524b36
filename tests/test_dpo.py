"""DPO: the loss against its documented formula, and training on real preference pairs that learns and resumes
exactly."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from tests.helpers import killed_and_run_again, make_chat_data, tiny_train_config
from tinylm.config import ChatDataConfig, LoraConfig
from tinylm.model.config import ModelConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.training.data import open_training_data
from tinylm.training.methods.dpo import REFERENCE_DIR, DpoConfig, dpo_loss, sequence_logps
from tinylm.training.trainer import train_model

MINIMIND = Path(__file__).parent / "data" / "minimind"


def test_dpo_loss_is_the_documented_sigmoid_formula_on_fixed_log_probabilities():
    beta = 0.1
    policy_chosen, policy_rejected = torch.tensor([-12.0, -30.5, -7.25]), torch.tensor([-15.0, -29.0, -9.0])
    reference_chosen, reference_rejected = torch.tensor([-13.0, -30.0, -8.0]), torch.tensor([-14.0, -30.0, -8.5])
    loss, metrics = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
    # TRL's documented sigmoid loss: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs.
    logits = [
        (pc - rc) - (pr - rr)
        for pc, pr, rc, rr in zip([-12.0, -30.5, -7.25], [-15.0, -29.0, -9.0], [-13, -30, -8], [-14, -30, -8.5])
    ]
    expected = sum(-math.log(1 / (1 + math.exp(-beta * logit))) for logit in logits) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    chosen_rewards = [beta * (pc - rc) for pc, rc in zip([-12.0, -30.5, -7.25], [-13, -30, -8])]
    rejected_rewards = [beta * (pr - rr) for pr, rr in zip([-15.0, -29.0, -9.0], [-14, -30, -8.5])]
    assert metrics["rewards/chosen"].item() == pytest.approx(sum(chosen_rewards) / 3, rel=1e-6)
    assert metrics["rewards/rejected"].item() == pytest.approx(sum(rejected_rewards) / 3, rel=1e-6)
    assert metrics["rewards/margin"].item() == pytest.approx(
        (sum(chosen_rewards) - sum(rejected_rewards)) / 3, rel=1e-6
    )
    assert metrics["rewards/accuracy"].item() == pytest.approx(2 / 3)


def test_sequence_log_probabilities_sum_the_trained_targets_only():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    weights = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    expected = [
        sum(F.log_softmax(logits[row, t], -1)[targets[row, t]].item() for t in range(5) if weights[row, t])
        for row in range(2)
    ]
    assert sequence_logps(logits, targets, weights).tolist() == pytest.approx(expected, rel=1e-5)


def preference_pairs(zuozhuan: Path, count: int) -> list[dict]:
    """Real text made into pairs: a line's opening as the prompt, its true continuation chosen, another line's
    rejected."""
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 24][
        : count + 1
    ]
    pairs = []
    for line, other in zip(lines, lines[1:]):
        prompt = [{"role": "user", "content": line[:8]}]
        pairs.append(
            {
                "chosen": [*prompt, {"role": "assistant", "content": line[8:20]}],
                "rejected": [*prompt, {"role": "assistant", "content": other[8:20]}],
            }
        )
    minimind = [json.loads(line) for line in (MINIMIND / "dpo_data.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs.append(
        {"chosen": minimind[1]["chosen"], "rejected": minimind[1]["chosen"][:-1] + minimind[1]["rejected"][-1:]}
    )
    return pairs


@pytest.fixture(scope="module")
def dpo_data(prefect_api, shards_dir, module_workspace, zuozhuan, tmp_path_factory) -> tuple[Path, str]:
    """Pairs from the Zuozhuan and MiniMind's DPO sample, each seen five times (a tiny model learns what it sees
    again, not unseen pairs), and a pretrained run for the policy to start from."""
    tmp_path = tmp_path_factory.mktemp("dpo")
    source = tmp_path / "dpo.jsonl"
    source.write_text(
        "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in preference_pairs(zuozhuan, 32)),
        encoding="utf-8",
    )
    tokenizer_dir = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    make_chat_data(
        [source],
        tokenizer_dir,
        tmp_path / "dpo",
        ChatDataConfig(
            format="dpo", max_seq_len=64, validation_fraction=0.15, shard_units=64, source_weights={"dpo.jsonl": 5}
        ),
    )
    model = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    pretrain = train_model(shards_dir, module_workspace, tiny_train_config(model=model, max_shards=1, sample_tokens=0))
    return tmp_path / "dpo", pretrain["run_id"]


def dpo_config(init_run_id: str, **overrides: object) -> DpoConfig:
    model = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    tiny = tiny_train_config(
        model=model, seq_len=64, max_steps_per_shard=None, max_shards=None, sample_tokens=0, eval_batches=1
    ).model_dump()
    return DpoConfig(
        **tiny | {"init_run_id": init_run_id, "learning_rate": 3e-3, "min_learning_rate": 3e-4, "beta": 0.5} | overrides
    )


def test_dpo_on_real_pairs_raises_accuracy_and_margin_and_logs_rewards(dpo_data, module_workspace):
    data_dir, pretrain_id = dpo_data
    data = open_training_data(data_dir, dpo_config(pretrain_id))
    batch = data.batch(0, np.arange(data.units(0)), 0)
    assert batch.inputs.shape == (8, 64), "four pairs: their chosen sides, then their rejected sides"
    assert torch.equal(batch.inputs[:4, :3], batch.inputs[4:, :3]), "a pair's sides share their prompt"

    result = train_model(data_dir, module_workspace, dpo_config(pretrain_id, epochs=2))
    client = MlflowClient()
    history = {
        name: [m.value for m in client.get_metric_history(result["run_id"], name)]
        for name in ("rewards/accuracy", "rewards/margin", "loss")
    }
    assert history["rewards/accuracy"][0] == 0 and history["rewards/margin"][0] == 0, (
        "the policy starts as the reference"
    )
    accuracy, margin = history["rewards/accuracy"], history["rewards/margin"]
    assert len(accuracy) == result["steps"] >= 30
    assert np.mean(accuracy[-10:]) > np.mean(accuracy[:10]) + 0.15 and np.mean(accuracy[-10:]) > 0.6
    assert np.mean(margin[-10:]) > 0.2 > np.mean(margin[:10])
    assert np.mean(history["loss"][-10:]) < history["loss"][0] == pytest.approx(math.log(2), abs=1e-4)
    run = client.get_run(result["run_id"])
    assert {"val_loss", "val_rewards/accuracy", "rewards/chosen", "rewards/rejected"} <= run.data.metrics.keys()
    assert run.data.tags["tinylm.init_run_id"] == pretrain_id
    assert len(list((data_dir / REFERENCE_DIR).glob("*/shard-*.bin"))) == data.shard_count()


def test_precomputed_reference_trains_as_the_reference_model_does(dpo_data, module_workspace):
    data_dir, pretrain_id = dpo_data
    precomputed = train_model(data_dir, module_workspace, dpo_config(pretrain_id, max_shards=1))
    live = train_model(data_dir, module_workspace, dpo_config(pretrain_id, max_shards=1, precompute_reference=False))
    client = MlflowClient()
    losses = [[m.value for m in client.get_metric_history(run["run_id"], "loss")] for run in (precomputed, live)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_dpo_refuses_sft_data_and_a_start_without_a_model(prefect_api, shards_dir, module_workspace, dpo_data):
    data_dir, pretrain_id = dpo_data
    with pytest.raises(ValueError, match="holds pretrain data"):
        train_model(shards_dir, module_workspace, dpo_config(pretrain_id))
    with pytest.raises(ValueError, match="set init_run_id"):
        train_model(data_dir, module_workspace, dpo_config(None))


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=4, alpha=8, dropout=0.1)], ids=["full", "lora"])
def test_dpo_killed_mid_run_and_run_again_ends_with_the_weights_of_one_never_killed(
    dpo_data, module_workspace, tmp_path, lora
):
    data_dir, pretrain_id = dpo_data
    config = dpo_config(pretrain_id, checkpoint_every=2, lora=lora)
    reference, resumed, expected, actual, meta = killed_and_run_again(data_dir, module_workspace, config)
    assert resumed["resumed_from_step"] and resumed["run_id"] != reference["run_id"]
    assert expected["model"].keys() == actual["model"].keys()
    assert all(torch.equal(expected["model"][name], actual["model"][name]) for name in expected["model"])
    if lora is not None:
        assert meta["base"]["run_id"] == pretrain_id and all("lora_" in name for name in actual["model"]), (
            "adapters alone"
        )
