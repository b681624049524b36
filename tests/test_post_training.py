"""MiniMind's chain as flows: pretrain → SFT with LoRA → merge → DPO, linked run to run in MLflow."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect import get_client

from tests.helpers import tiny_train_config
from tinylm.config import ChatDataConfig, LoraConfig
from tinylm.flows.chat_data import chat_data_flow
from tinylm.flows.train import train_flow
from tinylm.flows.tuning import dpo_flow, merge_flow
from tinylm.model.config import ModelConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tracking.lineage import STAGE_TAG
from tinylm.training.methods.dpo import DpoConfig

pytestmark = pytest.mark.slow
MINIMIND = Path(__file__).parent / "data" / "minimind"
MODEL = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=128)


def exchange(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")


def test_pretrain_sft_lora_merge_dpo_chain_is_linked_in_mlflow(prefect_api, shards_dir, workspace, zuozhuan, tmp_path):
    tokenizer = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 24][:40]
    dialogues = tmp_path / "zuozhuan_sft.jsonl"
    write_jsonl(dialogues, [{"conversations": exchange(line[:8], line[8:20])} for line in lines])
    sft_inputs = [
        str(dialogues),
        *(str(MINIMIND / name) for name in ("sft_data.jsonl", "tiny_sft.jsonl", "lora_data.jsonl")),
    ]
    sft_config = ChatDataConfig(max_seq_len=128, source_weights={"lora_data.jsonl": 4}, validation_fraction=0.2)
    sft_data = chat_data_flow(sft_inputs, tokenizer, str(tmp_path / "sft"), sft_config)
    assert [part["rows"] for part in sft_data["parts"]][1:] == [2, 3, 2], "MiniMind's files, every record kept"
    pairs = tmp_path / "pairs.jsonl"
    minimind = [json.loads(line) for line in (MINIMIND / "dpo_data.jsonl").read_text(encoding="utf-8").splitlines()]
    records = [{"chosen": m["chosen"], "rejected": m["chosen"][:-1] + m["rejected"][-1:]} for m in minimind]
    records += [
        {"chosen": exchange(a[:8], a[8:20]), "rejected": exchange(a[:8], b[8:20])} for a, b in zip(lines, lines[1:])
    ]
    write_jsonl(pairs, records)
    chat_data_flow(
        [str(pairs)],
        tokenizer,
        str(tmp_path / "dpo"),
        ChatDataConfig(format="dpo", max_seq_len=128, validation_fraction=0.25),
    )

    tiny = tiny_train_config(model=MODEL, sample_tokens=0)
    pretrain = train_flow(str(shards_dir), tiny.model_copy(update={"max_shards": 1}), str(workspace))
    sft_settings = {"seq_len": 128, "init_run_id": pretrain["run_id"], "lora": LoraConfig(rank=4, alpha=8)}
    sft = train_flow(str(tmp_path / "sft"), tiny.model_copy(update=sft_settings), str(workspace))
    command = [
        str(Path(sys.executable).parent / "tinylm"),
        "merge",
        "--run-id",
        sft["run_id"],
        "--workspace",
        str(workspace),
    ]
    merged = json.loads(
        subprocess.run(
            command, check=True, capture_output=True, text=True, env=os.environ | {"PREFECT_API_URL": prefect_api}
        ).stdout
    )
    assert merge_flow(sft["run_id"], str(workspace)) == merged | {"reused": True}, (
        "the command's merge, found again by the flow"
    )
    dpo_settings = {"seq_len": 128, "init_run_id": merged["run_id"], "learning_rate": 1e-3, "min_learning_rate": 1e-4}
    dpo_config = DpoConfig(**tiny.model_dump() | dpo_settings)
    dpo = dpo_flow(str(tmp_path / "dpo"), dpo_config, str(workspace))

    client = MlflowClient()
    runs = {
        name: client.get_run(result["run_id"])
        for name, result in (("train", pretrain), ("sft", sft), ("merge", merged), ("dpo", dpo))
    }
    assert [run.info.run_name for run in runs.values()] == ["train", "sft+lora", "merge", "dpo"]
    assert [run.data.tags[STAGE_TAG] for run in runs.values()] == ["train", "train", "merge", "dpo"]
    assert runs["sft"].data.tags["tinylm.init_run_id"] == pretrain["run_id"] and "val_loss" in runs["sft"].data.metrics
    assert runs["merge"].data.tags["tinylm.init_run_id"] == sft["run_id"]
    assert runs["dpo"].data.tags["tinylm.init_run_id"] == merged["run_id"]
    assert all(run.info.status == "FINISHED" and "prefect.flow_run_id" in run.data.tags for run in runs.values())
    assert {"rewards/accuracy", "rewards/margin", "val_loss"} <= runs["dpo"].data.metrics.keys()

    async def flow_names() -> set[str]:
        async with get_client() as prefect:
            flow_runs = await prefect.read_flow_runs()
            return {(await prefect.read_flow(run.flow_id)).name for run in flow_runs if run.state.is_completed()}

    assert {"chat-data", "train", "merge", "dpo"} <= asyncio.run(flow_names())
