import shutil
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import tiny_train_config
from tinylm.config import ShardsConfig, TokenizerConfig, TrainConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import load_checkpoint
from tinylm.tasks.export import export_hf, register_model
from tinylm.tasks.generate import generate_text
from tinylm.tasks.shards import build_shards
from tinylm.tasks.tokenizer import train_tokenizer
from tinylm.tasks.train import learning_rate, train_model

TINY_TRAIN = tiny_train_config()


@pytest.fixture(scope="module")
def shards_dir(small_corpus, tmp_path_factory):
    tokenizer_dir = tmp_path_factory.mktemp("tok")
    train_tokenizer(small_corpus, tokenizer_dir, TokenizerConfig(vocab_size=600))
    output = tmp_path_factory.mktemp("shards")
    build_shards(small_corpus, tokenizer_dir, output, ShardsConfig(shard_tokens=4096))
    return output


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(learning_rate=1.0, min_learning_rate=0.1, warmup_steps=10)
    assert learning_rate(0, 100, config) == pytest.approx(0.1)
    assert learning_rate(9, 100, config) == pytest.approx(1.0)
    assert learning_rate(100, 100, config) == pytest.approx(0.1)


def test_training_logs_params_metrics_and_a_checkpoint_per_shard(shards_dir, workspace):
    result = train_model(shards_dir, workspace, TINY_TRAIN)
    assert result["steps"] == 18
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    assert run.data.params["model.dim"] == "32" and run.data.params["seq_len"] == "32"
    losses = client.get_metric_history(result["run_id"], "loss")
    assert [m.step for m in losses] == list(range(1, 19))
    assert losses[-1].value < losses[0].value
    checkpoints = [item.path for item in client.list_artifacts(result["run_id"], "checkpoints")]
    assert checkpoints == ["checkpoints/shard-00000", "checkpoints/shard-00001", "checkpoints/shard-00002"]
    state, meta = load_checkpoint(workspace / "checkpoints" / result["run_id"] / "shard-00001")
    assert meta["cursor"] == {"shard": 2, "batch": 0, "step": 12}
    assert set(state) == {"model", "optimizer", "scheduler", "rng"}


def test_resume_skips_an_incomplete_checkpoint_and_ends_with_identical_weights(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(update={"max_shards": 2})
    first = train_model(shards_dir, workspace, config)
    local = workspace / "checkpoints" / first["run_id"]
    uninterrupted, _ = load_checkpoint(local / "shard-00001")
    shutil.rmtree(local)
    artifacts = Path(mlflow.get_run(first["run_id"]).info.artifact_uri.removeprefix("file://"))
    (artifacts / "checkpoints" / "shard-00001" / "checkpoint.json").unlink()

    resumed = train_model(shards_dir, workspace, config.model_copy(update={"resume_run_id": first["run_id"]}))

    assert resumed["run_id"] == first["run_id"] and resumed["steps"] == 12
    final, meta = load_checkpoint(local / "shard-00001")
    assert meta["cursor"]["step"] == 12
    assert all(torch.equal(uninterrupted["model"][k], final["model"][k]) for k in final["model"])


def test_generation_from_a_run_id_and_from_a_path(shards_dir, workspace):
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    from_run = generate_text(result["run_id"], "美利坚", max_new_tokens=8, temperature=0)
    from_path = generate_text(str(workspace / "checkpoints" / result["run_id"] / "shard-00000"), "美利坚", 8, temperature=0)
    assert from_run == from_path and from_run.startswith("美利坚") and len(from_run) > len("美利坚")
    assert mlflow.get_tracking_uri().startswith("sqlite:")


def test_export_loads_into_transformers_llama_with_the_same_logits_and_registers(shards_dir, workspace, tmp_path):
    transformers = pytest.importorskip("transformers")
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    checkpoint = workspace / "checkpoints" / result["run_id"] / "shard-00000"
    exported = export_hf(checkpoint, tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    state, meta = load_checkpoint(checkpoint)
    ours = Transformer(ModelConfig(**meta["model_config"])).eval()
    ours.load_state_dict(state["model"])
    tokens = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(hf_model(tokens).logits, ours(tokens).logits, atol=1e-4)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(exported))
    assert hf_tokenizer.decode(hf_tokenizer("美利坚合众国")["input_ids"]) == "美利坚合众国"

    assert register_model(result["run_id"], exported, "tinylm-test") == 1
    (version,) = MlflowClient().search_model_versions("name = 'tinylm-test'")
    assert version.run_id == result["run_id"] and version.source.endswith("hf-model")
