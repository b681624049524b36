"""Training methods as plug-ins: a new method is one class and a `@register`, even one that makes its own batches.

The toy method below trains on its own samples (a rollout, as GRPO's will be): from each
data window it keeps a prefix, lets the current model continue it, and trains the model on
the continuation. It is everything a new method writes; the trainer gives it the rest.
"""

import pytest
import torch
from mlflow.tracking import MlflowClient
from pydantic import Field

from tests.helpers import tiny_train_config
from tinylm.config import TrainConfig
from tinylm.training.data import Batch
from tinylm.training.methods import Method, Objective, Setup, config_classes, method_for, register
from tinylm.training.methods.dpo import Dpo, DpoConfig
from tinylm.training.methods.interface import Metrics
from tinylm.training.methods.pretrain import Pretraining
from tinylm.training.trainer import train_model


class SelfTrainingConfig(TrainConfig):
    prefix_tokens: int = Field(8, ge=1, description="tokens of each data window kept as the prompt")


class SelfTraining(Objective):
    generates_batches = True

    def __init__(self, prefix_tokens: int, seed: int) -> None:
        self.prefix_tokens, self.seed = prefix_tokens, seed
        self.rollout_steps: list[int] = []
        self.rollouts_without_grad = True

    def rollout(self, model: torch.nn.Module, batch: Batch, step: int) -> tuple[Batch, Metrics]:
        self.rollout_steps.append(step)
        self.rollouts_without_grad &= not torch.is_grad_enabled() and not model.training
        generator = torch.Generator(batch.inputs.device).manual_seed(self.seed * 100_003 + step)
        sequence = batch.inputs[:, : self.prefix_tokens]
        while sequence.shape[1] <= batch.inputs.shape[1]:
            probabilities = torch.softmax(model(sequence).logits[:, -1].float(), dim=-1)
            sequence = torch.cat([sequence, torch.multinomial(probabilities, 1, generator=generator)], dim=1)
        weights = torch.zeros_like(sequence[:, 1:], dtype=torch.float32)
        weights[:, self.prefix_tokens - 1 :] = 1.0
        made = Batch(sequence[:, :-1], sequence[:, 1:], weights)
        return made, {"rollout/distinct_tokens": sequence[:, self.prefix_tokens :].unique().numel() * torch.ones(())}

    def __call__(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, Metrics]:
        return model(batch.inputs, batch.targets, batch.weights).loss, {}


@register
class SelfTrainingMethod(Method):
    name = "self-training"
    config = SelfTrainingConfig
    data_formats = ("pretrain",)
    data_command = "token shards"

    def objective(self, config: SelfTrainingConfig, setup: Setup) -> Objective:
        return SelfTraining(config.prefix_tokens, config.seed)


def self_training_config(**overrides: object) -> SelfTrainingConfig:
    settings = tiny_train_config(max_shards=1, max_steps_per_shard=4, sample_tokens=0).model_dump()
    return SelfTrainingConfig(**settings | {"eval_batches": 0} | overrides)


def test_a_method_that_makes_its_own_batches_trains_through_the_trainer(prefect_api, shards_dir, workspace):
    first = train_model(shards_dir, workspace, self_training_config())
    assert isinstance(method_for(self_training_config()), SelfTrainingMethod)
    assert config_classes()["SelfTrainingConfig"] is SelfTrainingConfig, "a torchrun worker finds the config by name"
    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.info.run_name == "self-training" and first["steps"] == 4
    assert len(client.get_metric_history(first["run_id"], "rollout/distinct_tokens")) == 4, (
        "the rollout's metrics are logged"
    )
    assert run.data.params["prefix_tokens"] == "8"
    again = train_model(shards_dir, workspace, self_training_config(restart=True))
    losses = [[m.value for m in client.get_metric_history(r["run_id"], "loss")] for r in (first, again)]
    assert again["run_id"] != first["run_id"] and losses[0] == losses[1], (
        "rollouts drawn from the step's seed: a rerun samples the same"
    )


def test_the_trainer_calls_the_rollout_once_per_micro_batch_in_step_order_without_gradients(
    prefect_api, shards_dir, workspace
):
    seen: list[SelfTraining] = []

    class Watched(SelfTrainingMethod):
        def objective(self, config: SelfTrainingConfig, setup: Setup) -> Objective:
            seen.append(super().objective(config, setup))
            return seen[-1]

    class WatchedConfig(SelfTrainingConfig):
        pass

    Watched.config = WatchedConfig
    register(Watched)
    train_model(shards_dir, workspace, WatchedConfig(**self_training_config(grad_accum_steps=2).model_dump()))
    assert seen[0].rollout_steps == [0, 0, 1, 1, 2, 2, 3, 3] and seen[0].rollouts_without_grad


def test_a_config_selects_its_nearest_registered_method_and_a_class_selects_one_method():
    class StrongerDpo(DpoConfig):
        pass

    assert isinstance(method_for(StrongerDpo(init_run_id="run")), Dpo)
    assert isinstance(method_for(tiny_train_config()), Pretraining)

    class Rival(Method):
        name, config, data_formats, data_command = "rival", DpoConfig, ("dpo",), "chat-data --format dpo"

        def objective(self, config: TrainConfig, setup: Setup) -> Objective:
            raise AssertionError

    with pytest.raises(ValueError, match="DpoConfig already selects the method dpo"):
        register(Rival)


def test_a_method_refuses_data_it_does_not_train_on(prefect_api, shards_dir, workspace):
    with pytest.raises(ValueError, match="holds pretrain data; this training reads chat-data --format dpo output"):
        train_model(shards_dir, workspace, DpoConfig(**tiny_train_config().model_dump() | {"init_run_id": "run"}))
