"""White-box distillation: the KL term as its formula, a student that moves toward its teacher, and a refused
tokenizer."""

import dataclasses

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import make_shards, tiny_train_config
from tinylm.config import ShardsConfig, TokenizerConfig
from tinylm.flows.tuning import distill_flow
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tracking.lineage import STAGE_TAG
from tinylm.training.data import Batch
from tinylm.training.methods.distill import Distillation, DistillConfig
from tinylm.training.trainer import train_model

STUDENT = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=32)


def test_the_distillation_loss_is_temperature_scaled_kl_to_the_teacher_mixed_with_cross_entropy():
    torch.manual_seed(0)
    teacher = Transformer(ModelConfig(vocab_size=50, dim=32, n_layers=2, max_seq_len=16))
    student = Transformer(dataclasses.replace(STUDENT, vocab_size=50))
    tokens = torch.randint(0, 50, (2, 9))
    weights = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0], [1] * 8], dtype=torch.float32)
    batch = Batch(tokens[:, :-1], tokens[:, 1:], weights)
    loss, metrics = Distillation(teacher, temperature=2.0, kl_weight=0.7)(student, batch)
    with torch.no_grad():
        p_teacher = torch.softmax(teacher(batch.inputs).logits / 2.0, -1)
        log_student = torch.log_softmax(student(batch.inputs).logits / 2.0, -1)
        per_position = (p_teacher * (p_teacher.log() - log_student)).sum(-1) * 4.0
        kl = per_position[weights > 0].mean()
        cross_entropy = student(batch.inputs, batch.targets, weights).loss
    assert metrics["kl"].item() == pytest.approx(kl.item(), rel=1e-4)
    assert metrics["cross_entropy"].item() == pytest.approx(cross_entropy.item(), rel=1e-6)
    assert loss.item() == pytest.approx(0.7 * metrics["kl"].item() + 0.3 * cross_entropy.item(), rel=1e-6)


def test_a_smaller_student_moves_toward_its_teacher(prefect_api, shards_dir, workspace):
    teacher = train_model(shards_dir, workspace, tiny_train_config(max_shards=2, sample_tokens=0))
    config = DistillConfig(
        **tiny_train_config(model=STUDENT, sample_tokens=0).model_dump()
        | {"teacher_run_id": teacher["run_id"], "kl_weight": 1.0}
    )
    student = distill_flow(str(shards_dir), config, str(workspace))
    client = MlflowClient()
    kl = [m.value for m in client.get_metric_history(student["run_id"], "kl")]
    assert np.mean(kl[-3:]) < 0.8 * np.mean(kl[:3])
    run = client.get_run(student["run_id"])
    assert run.info.run_name == "distill" and run.data.tags["tinylm.teacher_run_id"] == teacher["run_id"]
    assert run.data.tags[STAGE_TAG] == "distill" and "prefect.flow_run_id" in run.data.tags
    assert run.data.params["model.dim"] == "16" and "val_kl" in run.data.metrics
    plain = train_model(shards_dir, workspace, tiny_train_config(model=STUDENT, sample_tokens=0))
    only_data = train_model(shards_dir, workspace, config.model_copy(update={"kl_weight": 0.0}))
    losses = [[m.value for m in client.get_metric_history(run["run_id"], "loss")] for run in (plain, only_data)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6), "with no weight on the KL, distillation is plain training"


def test_a_teacher_with_another_tokenizer_is_refused(prefect_api, shards_dir, small_corpus, workspace, tmp_path):
    tokenizer = tmp_path / "other-tokenizer"
    train_tokenizer(small_corpus, tokenizer, TokenizerConfig(vocab_size=500))
    make_shards(small_corpus, tokenizer, tmp_path / "other-shards", ShardsConfig(shard_tokens=4096))
    teacher = train_model(tmp_path / "other-shards", workspace, tiny_train_config(max_shards=1, sample_tokens=0))
    config = DistillConfig(**tiny_train_config(model=STUDENT).model_dump() | {"teacher_run_id": teacher["run_id"]})
    with pytest.raises(ValueError, match="distillation compares distributions over one vocabulary"):
        train_model(shards_dir, workspace, config)
