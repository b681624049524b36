"""Export a checkpoint as a Hugging Face folder and register it in the MLflow model registry.

The folder (safetensors weights, `config.json`, the tokenizer with its chat template) is the architecture
`model.hf_mapping` names for the checkpoint's shape: Llama for a dense model, Mixtral or Granite-MoE for a mixture
of experts, each of which `transformers.AutoModelForCausalLM`, vLLM and llama.cpp run with the same logits.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from tinylm.model.hf_mapping import DTYPES, hf_config, hf_state_dict
from tinylm.storage.atomic import atomic_path
from tinylm.storage.checkpoints import load_checkpoint
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE, hf_tokenizer_files
from tinylm.tracking.store import client
from tinylm.weights.reference import HF_CONFIG_FILE, WEIGHTS_FILE, full_weights

HF_ARTIFACT_PATH = "hf-model"


def export_hf(
    checkpoint_dir: str | Path,
    output_dir: str | Path,
    workspace: str | Path | None = None,
    dtype: str = "float32",
) -> Path:
    """Write the checkpoint's weights (as `dtype`: float32, bfloat16 or float16), config and tokenizer as a Hugging
    Face folder (atomically).

    A LoRA checkpoint is exported merged: its adapters folded into its base (found in
    `workspace`, else in MLflow), so the folder loads anywhere without PEFT.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one the export writes: use {', '.join(DTYPES)}")
    found = load_checkpoint(Path(checkpoint_dir))
    meta = found[1]
    model, config = full_weights(found, None if workspace is None else Path(workspace))
    weights = {name: tensor.to(DTYPES[dtype]).contiguous() for name, tensor in hf_state_dict(model, config).items()}
    output_dir = Path(output_dir)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / HF_CONFIG_FILE).write_text(
            json.dumps(hf_config(config, meta["eos_id"], dtype), indent=2), encoding="utf-8"
        )
        (tmp / TOKENIZER_FILE).write_bytes((Path(checkpoint_dir) / TOKENIZER_FILE).read_bytes())
        for name, content in hf_tokenizer_files(config.max_seq_len).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return output_dir


def register_model(run_id: str, export_dir: str | Path, name: str) -> int:
    """Log the exported folder to the run and make it a new version of registered model `name`; returns the version.

    Through the client, not `start_run`: reopening the finished training run would move its end time.
    The version says where it came from: its source run, a description, and the run's final metrics as tags.
    """
    registry = client()
    registry.log_artifacts(run_id, str(export_dir), HF_ARTIFACT_PATH)
    run = registry.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{HF_ARTIFACT_PATH}"
    if not registry.search_registered_models(f"name = '{name}'"):
        registry.create_registered_model(name, description="tinylm models, exported as Hugging Face folders")
    metrics = {key: value for key, value in run.data.metrics.items() if key in ("loss", "val_loss", "val_perplexity")}
    shown = ", ".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items()))
    description = f"Exported from training run {run.info.run_name or run_id} ({run_id}){': ' + shown if shown else ''}."
    tags = {f"metric.{key}": f"{value:.6g}" for key, value in metrics.items()} | {
        "params": run.data.params.get("parameters", "")
    }
    return int(registry.create_model_version(name, source, run_id=run_id, description=description, tags=tags).version)
