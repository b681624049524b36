"""LoRA through PEFT: adapters trained and checkpointed alone, merged into a run of their own, exported merged."""

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.helpers import make_chat_data, tiny_train_config
from tinylm.config import ChatDataConfig, LoraConfig
from tinylm.export.hf import export_hf
from tinylm.inference.generate import load_model
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import STATE_FILE, load_checkpoint, newest_local_checkpoint
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.training.merge import MERGED_FROM_TAG, merge_adapters
from tinylm.training.trainer import train_model
from tinylm.weights.adapters import load_adapter_state, with_adapters

MINIMIND = Path(__file__).parent / "data" / "minimind"


@pytest.fixture(scope="module")
def lora_run(prefect_api, shards_dir, module_workspace, zuozhuan, tmp_path_factory) -> tuple[dict, dict]:
    """A pretraining run, and LoRA SFT on it over Zuozhuan dialogues and MiniMind's identity set."""
    tmp_path = tmp_path_factory.mktemp("lora")
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20][:64]
    records = [
        {"conversations": [{"role": "user", "content": line[:8]}, {"role": "assistant", "content": line[8:20]}]}
        for line in lines
    ]
    dialogues = tmp_path / "dialogues.jsonl"
    dialogues.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    config = ChatDataConfig(max_seq_len=32, source_weights={"lora_data.jsonl": 8})
    make_chat_data(
        [dialogues, MINIMIND / "lora_data.jsonl"],
        read_manifest(shards_dir, ShardsManifest).tokenizer_dir,
        tmp_path / "sft",
        config,
    )
    pretrain = train_model(shards_dir, module_workspace, tiny_train_config(max_shards=1, sample_tokens=0))
    lora = LoraConfig(rank=4, alpha=8, target_modules=["wqkv", "wo", "w13", "w2"])
    sft_config = tiny_train_config(init_run_id=pretrain["run_id"], lora=lora, max_steps_per_shard=12)
    sft = train_model(tmp_path / "sft", module_workspace, sft_config)
    return pretrain, sft


def test_lora_trains_and_checkpoints_the_adapters_alone(lora_run, module_workspace):
    pretrain, sft = lora_run
    state, meta = load_checkpoint(newest_local_checkpoint(module_workspace / "checkpoints" / sft["run_id"]))
    assert state["model"] and all(".lora_A." in name or ".lora_B." in name for name in state["model"])
    assert meta["lora"]["rank"] == 4 and meta["base"] == {"run_id": pretrain["run_id"], "checkpoint": "step-00000006"}
    assert any(tensor.abs().sum() > 0 for name, tensor in state["model"].items() if "lora_B" in name), (
        "B starts at zero and moved"
    )
    pretrain_size = (
        (newest_local_checkpoint(module_workspace / "checkpoints" / pretrain["run_id"]) / STATE_FILE).stat().st_size
    )
    adapter_size = (
        (newest_local_checkpoint(module_workspace / "checkpoints" / sft["run_id"]) / STATE_FILE).stat().st_size
    )
    assert adapter_size < pretrain_size / 3
    run = MlflowClient().get_run(sft["run_id"])
    assert run.info.run_name == "sft+lora" and run.data.tags["tinylm.init_run_id"] == pretrain["run_id"]
    assert int(run.data.params["trainable_parameters"]) < int(run.data.params["parameters"]) / 5
    assert run.data.params["parameters"] == MlflowClient().get_run(pretrain["run_id"]).data.params["parameters"], (
        "adapters not counted"
    )
    losses = [m.value for m in MlflowClient().get_metric_history(sft["run_id"], "loss")]
    assert losses[-1] < losses[0]


def test_merged_weights_give_the_logits_of_base_plus_adapter_in_tinylm_and_in_transformers(
    lora_run, module_workspace, tmp_path
):
    transformers = pytest.importorskip("transformers")
    pretrain, sft = lora_run
    base_state, base_meta = load_checkpoint(
        newest_local_checkpoint(module_workspace / "checkpoints" / pretrain["run_id"])
    )
    adapter_state, meta = load_checkpoint(newest_local_checkpoint(module_workspace / "checkpoints" / sft["run_id"]))
    base = Transformer(load_model(pretrain["run_id"], module_workspace).model.config)
    base.load_state_dict(base_state["model"])
    tokens = torch.randint(0, base.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base_logits = base.eval()(tokens).logits
    adapted = with_adapters(base, LoraConfig(**meta["lora"]))  # PEFT wraps the layers of `base` in place
    load_adapter_state(adapted, adapter_state["model"])
    with torch.no_grad():
        expected = adapted.eval()(tokens).logits

    merged = merge_adapters(sft["run_id"], module_workspace)
    assert not merged["reused"] and merge_adapters(sft["run_id"], module_workspace)["run_id"] == merged["run_id"], (
        "merging again reuses"
    )
    run = MlflowClient().get_run(merged["run_id"])
    assert (
        run.data.tags["tinylm.init_run_id"] == sft["run_id"]
        and run.data.tags[MERGED_FROM_TAG] == f"{sft['run_id']}/step-00000012"
    )
    with torch.no_grad():
        from_merged_run = load_model(merged["run_id"], module_workspace).model(tokens).logits
        from_adapter_run = load_model(sft["run_id"], module_workspace).model(tokens).logits
    torch.testing.assert_close(from_merged_run, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_adapter_run, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(from_merged_run, base_logits, atol=1e-3), "the adapters changed the model"

    exported = export_hf(
        newest_local_checkpoint(module_workspace / "checkpoints" / sft["run_id"]), tmp_path / "hf", module_workspace
    )
    llama = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    with torch.no_grad():
        torch.testing.assert_close(llama(tokens).logits, expected, atol=1e-4, rtol=1e-4)
    assert base_meta["tokenizer_sha256"] == meta["tokenizer_sha256"]


def test_merging_a_run_without_adapters_is_a_clear_error(lora_run, module_workspace):
    pretrain, _ = lora_run
    with pytest.raises(ValueError, match="not LoRA adapters: there is nothing to merge"):
        merge_adapters(pretrain["run_id"], module_workspace)
