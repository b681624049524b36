import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import free_port, kill_when, make_chat_data, make_shards, tiny_train_config
from tinylm.config import ChatDataConfig, ShardsConfig, TokenizerConfig, TrainConfig
from tinylm.export.hf import export_hf
from tinylm.export.model_registry import register_model
from tinylm.flows.train import train_flow
from tinylm.inference.generate import chat_reply, generate_text, load_model
from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import load_checkpoint
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.chat_template import ChatEncoder
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tracking.store import use_experiment
from tinylm.training.data import Batch, open_training_data, prefetch, unit_order
from tinylm.training.optimizer import learning_rate
from tinylm.training.trainer import train_model

TINY_TRAIN = tiny_train_config()


def test_schedule_warms_up_then_decays_to_the_floor():
    config = TrainConfig(learning_rate=1.0, min_learning_rate=0.1, warmup_steps=10)
    assert learning_rate(0, 100, config) == pytest.approx(0.1)
    assert learning_rate(9, 100, config) == pytest.approx(1.0)
    assert learning_rate(100, 100, config) == pytest.approx(0.1)


def test_training_logs_params_metrics_validation_samples_and_a_checkpoint_per_shard(shards_dir, workspace, caplog):
    with caplog.at_level(logging.INFO, logger="tinylm.training"):
        result = train_model(shards_dir, workspace, TINY_TRAIN)
    assert result["steps"] == 18
    progress = [record.getMessage() for record in caplog.records if record.name == "tinylm.training.trainer"]
    assert (
        len(progress) == 18 and progress[-1].startswith("step 18/18  loss ") and "tokens/s  ETA 0m00s" in progress[-1]
    )
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    assert run.info.run_name == "train" and run.data.params["model.vocab_size"].isdigit(), (
        "the vocabulary size used, not None"
    )
    assert run.data.params["model.dim"] == "32" and run.data.params["seq_len"] == "32"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", (
        "MLflow would open it in its GenAI view"
    )
    losses = client.get_metric_history(result["run_id"], "loss")
    assert [m.step for m in losses] == list(range(1, 19))
    assert losses[-1].value < losses[0].value
    validation = client.get_metric_history(result["run_id"], "val_loss")
    assert [m.step for m in validation] == [6, 12, 18] and validation[-1].value < validation[0].value
    perplexity = client.get_metric_history(result["run_id"], "val_perplexity")[-1].value
    assert perplexity == pytest.approx(math.exp(validation[-1].value), rel=1e-5)
    checkpoints = [item.path for item in client.list_artifacts(result["run_id"], "checkpoints")]
    assert checkpoints == ["checkpoints/step-00000006", "checkpoints/step-00000012", "checkpoints/step-00000018"]
    samples = [item.path for item in client.list_artifacts(result["run_id"], "samples")]
    assert samples == ["samples/shard-00000.txt", "samples/shard-00001.txt", "samples/shard-00002.txt"]
    text = Path(mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path=samples[-1])).read_text()
    assert text.startswith("### The\nThe") and "### 我们\n我们" in text
    state, meta = load_checkpoint(workspace / "checkpoints" / result["run_id"] / "step-00000012")
    assert meta["cursor"] == {"shard": 2, "batch": 0, "step": 12}
    assert set(state) == {"model", "optimizer", "scheduler", "rng"}


def test_the_same_training_again_does_no_work(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(update={"max_shards": 1})
    first = train_model(shards_dir, workspace, config)
    again = train_model(shards_dir, workspace, config)
    assert again == first | {"reused": True} and not first["reused"]
    changed = train_model(shards_dir, workspace, config.model_copy(update={"learning_rate": 1e-3}))
    assert changed["run_id"] != first["run_id"] and not changed["reused"]


def test_resume_skips_an_incomplete_checkpoint_and_ends_with_identical_weights(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(update={"max_shards": 2})
    first = train_model(shards_dir, workspace, config)
    local = workspace / "checkpoints" / first["run_id"]
    uninterrupted, _ = load_checkpoint(local / "step-00000012")
    shutil.rmtree(local)
    artifacts = Path(mlflow.get_run(first["run_id"]).info.artifact_uri.removeprefix("file://"))
    (artifacts / "checkpoints" / "step-00000012" / "checkpoint.json").unlink()

    resumed = train_model(shards_dir, workspace, config.model_copy(update={"resume_run_id": first["run_id"]}))

    assert resumed["run_id"] == first["run_id"] and resumed["steps"] == 12
    final, meta = load_checkpoint(local / "step-00000012")
    assert meta["cursor"]["step"] == 12
    assert all(torch.equal(uninterrupted["model"][k], final["model"][k]) for k in final["model"])


def test_a_run_killed_mid_shard_resumes_to_the_weights_of_an_uninterrupted_run(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(
        update={"max_shards": 2, "max_steps_per_shard": 40, "checkpoint_every": 3, "eval_batches": 2}
    )
    reference = train_model(shards_dir, workspace, config.model_copy(update={"run_name": "reference"}))
    uninterrupted, _ = load_checkpoint(
        workspace / "checkpoints" / reference["run_id"] / f"step-{reference['steps']:08d}"
    )
    killed_config = config.model_copy(update={"run_name": "killed"}).model_dump_json()
    code = (
        "from tinylm.training.trainer import train_model; from tinylm.config import TrainConfig; "
        f"train_model({str(shards_dir)!r}, {str(workspace)!r}, TrainConfig.model_validate_json({killed_config!r}))"
    )
    killed_dir = workspace / "checkpoints"
    kill_when(
        code,
        lambda: any(
            p.name == "step-00000009" for p in killed_dir.glob("*/step-*") if reference["run_id"] not in str(p)
        ),
    )
    (killed,) = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("tinylm").experiment_id], "attributes.run_name = 'killed'"
    )
    steps_done = max(int(p.name.removeprefix("step-")) for p in (killed_dir / killed.info.run_id).glob("step-*"))
    assert steps_done < reference["steps"], "killed before the end"

    resumed = train_model(shards_dir, workspace, config.model_copy(update={"resume_run_id": killed.info.run_id}))

    assert resumed["steps"] == reference["steps"]
    final, _ = load_checkpoint(killed_dir / killed.info.run_id / f"step-{resumed['steps']:08d}")
    assert all(torch.equal(uninterrupted["model"][k], final["model"][k]) for k in final["model"])


def test_epochs_pass_over_the_data_again_in_a_new_order_and_a_kill_mid_epoch_resumes_exactly(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(
        update={"max_shards": 1, "max_steps_per_shard": 20, "epochs": 3, "checkpoint_every": 3, "eval_batches": 1}
    )
    units = open_training_data(shards_dir, config).units(0)
    orders = [unit_order(units, config, shard) for shard in range(3)]
    assert all(sorted(order) == list(range(units)) for order in orders), "each epoch sees every window once"
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    reference = train_model(shards_dir, workspace, config.model_copy(update={"run_name": "reference"}))
    assert reference["steps"] == 60, "three passes of 20 steps"
    killed_config = config.model_copy(update={"run_name": "killed"}).model_dump_json()
    code = (
        "from tinylm.training.trainer import train_model; from tinylm.config import TrainConfig; "
        f"train_model({str(shards_dir)!r}, {str(workspace)!r}, TrainConfig.model_validate_json({killed_config!r}))"
    )
    runs = workspace / "checkpoints"
    kill_when(code, lambda: any(p for p in runs.glob("*/step-00000027") if reference["run_id"] not in str(p)))
    (killed,) = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("tinylm").experiment_id], "attributes.run_name = 'killed'"
    )
    done = max(int(p.name.removeprefix("step-")) for p in (runs / killed.info.run_id).glob("step-*"))
    assert 20 < done < 60, "killed inside the second or third epoch"
    resumed = train_model(shards_dir, workspace, config.model_copy(update={"resume_run_id": killed.info.run_id}))
    final, _ = load_checkpoint(runs / killed.info.run_id / "step-00000060")
    uninterrupted, _ = load_checkpoint(runs / reference["run_id"] / "step-00000060")
    assert resumed["steps"] == 60 and all(
        torch.equal(uninterrupted["model"][k], final["model"][k]) for k in final["model"]
    )


def test_restart_abandons_an_interrupted_run_as_killed_and_trains_afresh(shards_dir, workspace):
    config = TINY_TRAIN.model_copy(
        update={"max_shards": 2, "max_steps_per_shard": 40, "checkpoint_every": 3, "run_name": "restart"}
    )
    code = (
        "from tinylm.training.trainer import train_model; from tinylm.config import TrainConfig; "
        f"train_model({str(shards_dir)!r}, {str(workspace)!r}, "
        f"TrainConfig.model_validate_json({config.model_dump_json()!r}))"
    )
    kill_when(code, lambda: any((workspace / "checkpoints").glob("*/step-00000003/checkpoint.json")))
    experiment_id = use_experiment("tinylm", workspace)
    (killed,) = MlflowClient().search_runs([experiment_id], "attributes.run_name = 'restart'")
    assert killed.info.status == "RUNNING", "a SIGKILL leaves the run RUNNING until something continues or abandons it"

    fresh = train_model(shards_dir, workspace, config.model_copy(update={"restart": True}))

    assert fresh["run_id"] != killed.info.run_id and fresh["resumed_from_step"] is None
    assert MlflowClient().get_run(killed.info.run_id).info.status == "KILLED"
    assert train_model(shards_dir, workspace, config)["run_id"] == fresh["run_id"], (
        "the finished fresh run is the one returned"
    )


def damaged_copy(shards_dir: Path, destination: Path, damage) -> Path:
    """A copy of the shard set whose first shard `damage(ids)` edits in place (same size, manifest untouched)."""
    shutil.copytree(shards_dir, destination)
    first = destination / read_manifest(destination, ShardsManifest).shards[0].file
    ids = np.fromfile(first, dtype=np.dtype(read_manifest(destination, ShardsManifest).dtype))
    damage(ids)
    ids.tofile(first)
    return first


def test_a_shard_changed_in_place_is_refused_by_its_sha256_naming_the_file(shards_dir, workspace, tmp_path):
    damaged = damaged_copy(shards_dir, tmp_path / "shards", lambda ids: ids.__setitem__(100, (ids[100] + 1) % 50))
    with pytest.raises(ValueError, match=f"shard {damaged} does not match its sha256"):
        train_model(tmp_path / "shards", workspace, TINY_TRAIN)
    unchecked = train_model(
        tmp_path / "shards", workspace, TINY_TRAIN.model_copy(update={"verify_shards": False, "max_shards": 1})
    )
    assert unchecked["steps"] > 0, "verification can be switched off for very large sets"


def test_token_ids_outside_the_vocabulary_are_refused_naming_the_shard(shards_dir, workspace, tmp_path):
    vocab_size = read_manifest(shards_dir, ShardsManifest).vocab_size
    damaged = damaged_copy(shards_dir, tmp_path / "shards", lambda ids: ids.__setitem__(7, vocab_size + 3))
    with pytest.raises(ValueError, match=f"shard {damaged} holds token id {vocab_size + 3}, outside the vocabulary"):
        train_model(tmp_path / "shards", workspace, TINY_TRAIN.model_copy(update={"verify_shards": False}))


def test_batches_are_cut_ahead_on_a_worker_thread_in_the_loops_order_and_errors_surface_at_their_step():
    threads = []

    def produce(step: int) -> list[Batch]:
        threads.append(threading.current_thread().name)
        if step == 5:
            raise ValueError("shard 0 ends early")
        return [Batch(torch.tensor([step]), torch.tensor([step + 1]))]

    ahead = prefetch(produce, range(3, 8), pin=False, depth=2)
    assert [int(next(ahead)[0].inputs) for _ in range(2)] == [3, 4]
    with pytest.raises(ValueError, match="shard 0 ends early"):
        next(ahead)
    assert set(threads) == {"tinylm-prefetch"}

    endless = prefetch(lambda step: [Batch(torch.tensor([step]), torch.tensor([step]))], range(10**9), pin=False)
    assert int(next(endless)[0].inputs) == 0
    endless.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "tinylm-prefetch"], (
        "closing stops the worker"
    )


@pytest.mark.slow
def test_a_compiled_model_trains_to_the_losses_of_the_eager_one(shards_dir, workspace):
    config = tiny_train_config(max_shards=1, max_steps_per_shard=4, eval_batches=1, sample_tokens=0)
    eager = train_model(shards_dir, workspace, config)
    compiled = train_model(shards_dir, workspace, config.model_copy(update={"compile": True}))
    assert compiled["run_id"] != eager["run_id"] and compiled["steps"] == eager["steps"] == 4
    client = MlflowClient()
    losses = [
        [metric.value for metric in client.get_metric_history(result["run_id"], "loss")] for result in (eager, compiled)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert client.get_run(compiled["run_id"]).data.metrics["val_loss"] == pytest.approx(
        client.get_run(eager["run_id"]).data.metrics["val_loss"], rel=1e-4
    )


def test_gradient_accumulation_takes_fewer_optimizer_steps_over_the_same_windows(shards_dir, workspace):
    result = train_model(
        shards_dir, workspace, TINY_TRAIN.model_copy(update={"grad_accum_steps": 2, "max_steps_per_shard": 3})
    )
    assert result["steps"] == 9
    assert math.isfinite(result["final_loss"])


def test_a_tracking_server_that_is_down_fails_fast_naming_it(shards_dir, workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="http://127.0.0.1:9"):
        train_model(shards_dir, workspace, TINY_TRAIN)
    assert time.monotonic() - started < 30


def test_shards_of_another_tokenizer_are_refused_on_resume(prefect_api, shards_dir, small_corpus, workspace, tmp_path):
    first = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    other_tokenizer = tmp_path / "other-tok"
    train_tokenizer(small_corpus, other_tokenizer, TokenizerConfig(vocab_size=500))
    other_shards = tmp_path / "other-shards"
    make_shards(small_corpus, other_tokenizer, other_shards, ShardsConfig(shard_tokens=4096))
    with pytest.raises(ValueError, match="another tokenizer|built with tokenizer"):
        train_model(other_shards, workspace, TINY_TRAIN.model_copy(update={"resume_run_id": first["run_id"]}))


def test_generation_from_a_run_id_and_from_a_path(shards_dir, workspace):
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 2}))
    greedy = Sampling(temperature=0)
    loaded = load_model(result["run_id"])
    from_run = generate_text(loaded, "美利坚", max_new_tokens=8, sampling=greedy)
    run_dir = workspace / "checkpoints" / result["run_id"]
    from_path = generate_text(load_model(str(run_dir / "step-00000012")), "美利坚", 8, greedy)

    ids = loaded.tokenizer.encode("美利坚").ids
    new = [t for t in stream_tokens(loaded.model, ids, 8, greedy, loaded.stop_ids) if t not in loaded.stop_ids]
    assert from_run == from_path == "美利坚" + loaded.tokenizer.decode(new)
    assert mlflow.get_tracking_uri().startswith("sqlite:")

    def weights(checkpoint: Path) -> dict:
        return load_model(str(checkpoint)).model.state_dict()

    newest, earlier = weights(run_dir / "step-00000012"), weights(run_dir / "step-00000006")
    assert all(torch.equal(newest[k], v) for k, v in weights(run_dir).items()), (
        "a run's checkpoint directory means its newest step"
    )
    (run_dir / "step-00000012" / "checkpoint.json").unlink()
    assert all(torch.equal(earlier[k], v) for k, v in weights(run_dir).items()), "an incomplete step is not the newest"
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_model(str(run_dir.parent))


def test_chat_streams_replies_and_carries_the_conversation(shards_dir, workspace):
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    loaded = load_model(str(workspace / "checkpoints" / result["run_id"] / "step-00000006"))
    greedy = Sampling(temperature=0)
    history = [{"role": "user", "content": "合众国"}]
    pieces = list(chat_reply(loaded, history, 12, greedy, torch.Generator()))
    assert pieces and all(pieces)
    second = history + [{"role": "assistant", "content": "".join(pieces)}, {"role": "user", "content": "宪法"}]
    again = "".join(chat_reply(loaded, second, 12, greedy, torch.Generator()))
    (prompt,) = ChatEncoder(loaded.tokenizer).encode([second], generation_prompt=True)
    assert loaded.tokenizer.decode(prompt.ids, skip_special_tokens=False).count("<|im_start|>") == 4
    expected = loaded.tokenizer.decode(
        list(stream_tokens(loaded.model, prompt.ids, 12, greedy, loaded.stop_ids))
    ).split("<|im_end|>")[0]
    assert again == expected


def test_export_loads_into_transformers_llama_with_the_same_logits_and_registers(shards_dir, workspace, tmp_path):
    transformers = pytest.importorskip("transformers")
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    checkpoint = workspace / "checkpoints" / result["run_id"] / "step-00000006"
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

    ended = MlflowClient().get_run(result["run_id"]).info.end_time
    assert register_model(result["run_id"], exported, "tinylm-test") == 1
    (version,) = MlflowClient().search_model_versions("name = 'tinylm-test'")
    assert version.run_id == result["run_id"] and version.source.endswith("hf-model")
    assert (
        result["run_id"] in version.description
        and "val_loss" in version.description
        and "metric.val_loss" in version.tags
    )
    run = MlflowClient().get_run(result["run_id"])
    assert run.info.end_time == ended and run.info.status == "FINISHED", "registering reopened the training run"


def test_sft_starts_from_a_pretrain_run_and_learns_only_assistant_tokens(
    prefect_api, shards_dir, workspace, zuozhuan, tmp_path
):
    pretrain = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    tokenizer_dir = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20][:64]
    records = [
        {"conversations": [{"role": "user", "content": line[:8]}, {"role": "assistant", "content": line[8:20]}]}
        for line in lines
    ]
    source = tmp_path / "sft.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    make_chat_data([str(source)], tokenizer_dir, tmp_path / "sft", ChatDataConfig(max_seq_len=32))

    data = open_training_data(tmp_path / "sft", TINY_TRAIN)
    batch = data.batch(0, np.arange(data.units(0)), 0)
    inputs, targets, mask = batch.inputs, batch.targets, batch.weights
    pad = data.manifest.pad_id
    assert inputs.shape == targets.shape == mask.shape == (4, 32)
    assert not mask[targets == pad].any(), "padding never counts"
    assert torch.equal(targets[:, :-1], inputs[:, 1:])

    config = TINY_TRAIN.model_copy(
        update={"init_run_id": pretrain["run_id"], "max_steps_per_shard": 16, "eval_batches": 0}
    )
    sft = train_model(tmp_path / "sft", workspace, config)
    assert sft["run_id"] != pretrain["run_id"] and sft["steps"] == min(16, data.units(0) // 4) > 8
    run = MlflowClient().get_run(sft["run_id"])
    assert run.data.tags["tinylm.init_run_id"] == pretrain["run_id"]
    losses = MlflowClient().get_metric_history(sft["run_id"], "loss")
    assert losses[-1].value < losses[0].value
    _, meta = load_checkpoint(workspace / "checkpoints" / sft["run_id"] / f"step-{sft['steps']:08d}")
    _, pretrained = load_checkpoint(workspace / "checkpoints" / pretrain["run_id"] / "step-00000006")
    assert meta["model_config"] == pretrained["model_config"]


def test_a_small_set_trains_for_epochs_and_a_validation_split_under_a_batch_is_scored(
    prefect_api, shards_dir, workspace, zuozhuan, tmp_path
):
    tokenizer_dir = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20][:16]
    source = tmp_path / "identity.jsonl"
    records = [
        {"conversations": [{"role": "user", "content": x[:8]}, {"role": "assistant", "content": x[8:20]}]}
        for x in lines
    ]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    chat = ChatDataConfig(max_seq_len=32, validation_fraction=0.15)
    manifest = make_chat_data([str(source)], tokenizer_dir, tmp_path / "sft", chat)
    held_out = manifest["stats"]["validation_rows"]
    assert 0 < held_out < TINY_TRAIN.batch_size, "fewer validation records than one batch"
    config = TINY_TRAIN.model_copy(update={"epochs": 5, "eval_batches": 2, "max_steps_per_shard": None})
    result = train_model(tmp_path / "sft", workspace, config)
    assert result["steps"] == 5 * (manifest["train_units"] // 4) > 5
    validation = MlflowClient().get_metric_history(result["run_id"], "val_loss")
    assert len(validation) == 5 and all(math.isfinite(point.value) for point in validation), "scored after each pass"


@pytest.mark.slow
def test_torchrun_data_parallel_matches_one_process_with_the_whole_batch(shards_dir, workspace, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    single = TINY_TRAIN.model_copy(update={"max_shards": 1, "batch_size": 4, "run_name": "single", "sample_tokens": 0})
    reference = train_model(shards_dir, workspace, single)
    parallel = single.model_copy(update={"batch_size": 2, "run_name": "parallel"})
    code = (
        "from tinylm.training.trainer import train_model; from tinylm.config import TrainConfig; "
        f"train_model({str(shards_dir)!r}, {str(workspace)!r}, "
        f"TrainConfig.model_validate_json({parallel.model_dump_json()!r}))"
    )
    environment = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", sys.executable, "-c", code],
        check=True,
        env=environment,
        timeout=300,
    )
    client = MlflowClient()
    (run,) = client.search_runs(
        [mlflow.get_experiment_by_name("tinylm").experiment_id], "attributes.run_name = 'parallel'"
    )
    assert run.data.params["processes"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == reference["steps"]
    expected, _ = load_checkpoint(workspace / "checkpoints" / reference["run_id"] / f"step-{reference['steps']:08d}")
    actual, _ = load_checkpoint(workspace / "checkpoints" / run.info.run_id / f"step-{reference['steps']:08d}")
    assert all(torch.allclose(expected["model"][k], actual["model"][k], atol=1e-5) for k in expected["model"])


@pytest.mark.slow
def test_two_nodes_meet_at_a_rendezvous_and_train_what_one_process_trains_with_the_whole_batch(
    prefect_api, shards_dir, workspace, tmp_path
):
    """Two `tinylm train` commands, as two machines run them (one process each, Gloo on CPU), meet at node 0's c10d
    endpoint: one MLflow run, one set of checkpoints, the same result on both, and one process's weights."""
    single = TINY_TRAIN.model_copy(update={"max_shards": 1, "batch_size": 4, "run_name": "one", "sample_tokens": 0})
    reference = train_model(shards_dir, workspace, single)
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps(single.model_copy(update={"batch_size": 2, "run_name": "two-nodes"}).model_dump()))
    command = [sys.executable, "-m", "tinylm.cli", "train", "--shards", str(shards_dir), "--workspace", str(workspace)]
    command += ["--config", str(config), "--nodes", "2", "--rendezvous", f"127.0.0.1:{free_port()}"]
    environment = os.environ | {"PREFECT_API_URL": prefect_api, "OMP_NUM_THREADS": "1"}
    nodes = [  # node 1 first: it waits at the rendezvous for node 0, which hosts it
        subprocess.Popen([*command, "--node-rank", rank], stdout=subprocess.PIPE, text=True, env=environment)
        for rank in ("1", "0")
    ]
    results = [json.loads(node.communicate(timeout=300)[0]) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0] and results[0] == results[1]
    client = MlflowClient()
    (run,) = client.search_runs(
        [mlflow.get_experiment_by_name("tinylm").experiment_id], "attributes.run_name = 'two-nodes'"
    )
    assert run.info.run_id == results[0]["run_id"] and run.data.params["processes"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == reference["steps"] == results[0]["steps"]
    assert [path.name for path in (workspace / "checkpoints" / run.info.run_id).iterdir()] == [
        f"step-{reference['steps']:08d}"
    ]
    expected, _ = load_checkpoint(workspace / "checkpoints" / reference["run_id"] / f"step-{reference['steps']:08d}")
    actual, _ = load_checkpoint(workspace / "checkpoints" / run.info.run_id / f"step-{reference['steps']:08d}")
    assert all(torch.allclose(expected["model"][k], actual["model"][k], atol=1e-5) for k in expected["model"])


def test_chat_and_export_commands(shards_dir, workspace, tmp_path):
    result = train_model(shards_dir, workspace, TINY_TRAIN.model_copy(update={"max_shards": 1}))
    tinylm = str(Path(sys.executable).parent / "tinylm")
    environment = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    chat = subprocess.run(
        [
            tinylm,
            "chat",
            "--checkpoint",
            result["run_id"],
            "--temperature",
            "0",
            "--max-new-tokens",
            "6",
            "--workspace",
            str(workspace),
        ],
        input="合众国\n/reset\n\n宪法\n",
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=120,
    )
    loaded = load_model(result["run_id"])
    greedy = Sampling(temperature=0, repetition_penalty=1.1)
    replies = [
        "".join(chat_reply(loaded, [{"role": "user", "content": text}], 6, greedy, torch.Generator()))
        for text in ("合众国", "宪法")
    ]
    assert chat.stdout == "".join(reply + "\n" for reply in replies), (
        "one streamed line per message; /reset and blank lines answer nothing"
    )
    exported = subprocess.run(
        [
            tinylm,
            "export",
            "--checkpoint",
            result["run_id"],
            "--output",
            str(tmp_path / "hf"),
            "--register",
            "tinylm-cli",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=120,
    )
    assert json.loads(exported.stdout)["registered"] == {"name": "tinylm-cli", "version": 1}
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "tokenizer_config.json").exists()


@pytest.mark.slow
def test_the_train_flow_launches_torchrun_when_asked_for_several_processes(prefect_api, shards_dir, workspace):
    config = TINY_TRAIN.model_copy(update={"max_shards": 1, "batch_size": 2, "processes": 2, "sample_tokens": 0})
    result = train_flow(str(shards_dir), config, str(workspace))
    use_experiment("tinylm", workspace)
    run = MlflowClient().get_run(result["run_id"])
    assert run.data.params["processes"] == "2" and result["steps"] == 6 and not result["reused"]
    assert (workspace / "checkpoints" / result["run_id"] / "step-00000006" / "checkpoint.json").exists()


def test_the_train_command_prints_a_progress_line_per_log_every_when_output_goes_to_a_file(
    prefect_api, shards_dir, workspace, tmp_path
):
    config = tmp_path / "train.yaml"
    config.write_text(
        json.dumps(TINY_TRAIN.model_copy(update={"max_shards": 1, "log_every": 2}).model_dump(mode="json"))
    )
    command = [
        sys.executable,
        "-m",
        "tinylm.cli",
        "train",
        "--shards",
        str(shards_dir),
        "--workspace",
        str(workspace),
        "--config",
        str(config),
    ]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        subprocess.run(
            command,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=os.environ | {"PREFECT_API_URL": prefect_api},
        )
    lines = [line for line in (tmp_path / "stderr.txt").read_text().splitlines() if "tokens/s  ETA" in line]
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["1/6", "3/6", "5/6", "6/6"]
