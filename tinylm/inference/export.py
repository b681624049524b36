"""Export a checkpoint as a Hugging Face folder and register it in the MLflow model registry.

The dense model is Llama's architecture, so the folder is a `LlamaForCausalLM`
(safetensors weights, `config.json`, the tokenizer with its chat template) that
`transformers.AutoModelForCausalLM.from_pretrained` loads and any Llama tool serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import torch
from safetensors.torch import save_file

from tinylm.model.config import ModelConfig
from tinylm.storage.atomic import atomic_path
from tinylm.storage.checkpoints import load_checkpoint
from tinylm.tracking.store import client
from tinylm.tokens.tokenizer import TOKENIZER_FILE, hf_tokenizer_files

WEIGHTS_FILE = "model.safetensors"
HF_ARTIFACT_PATH = "hf-model"
_LAYER_NAMES = {
    "attention.wo": ["self_attn.o_proj"],
    "attention.wqkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    "feed_forward.w13": ["mlp.gate_proj", "mlp.up_proj"],
    "feed_forward.w2": ["mlp.down_proj"],
    "attention_norm": ["input_layernorm"],
    "ffn_norm": ["post_attention_layernorm"],
}


def llama_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our weights under `LlamaForCausalLM`'s names, fused projections split back into Llama's three and two.

    The tied output matrix is left out: Llama ties it to the embeddings itself.
    """
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    sizes = {"attention.wqkv": [q, kv, kv], "feed_forward.w13": [config.ffn_dim, config.ffn_dim]}
    converted = {"model.embed_tokens.weight": state["tok_embeddings.weight"], "model.norm.weight": state["norm.weight"]}
    for name, tensor in state.items():
        if not name.startswith("layers."):
            continue
        _, index, rest = name.split(".", 2)
        module, _, kind = rest.rpartition(".")
        pieces = tensor.split(sizes[module]) if module in sizes else [tensor]
        for llama_module, piece in zip(_LAYER_NAMES[module], pieces, strict=True):
            converted[f"model.layers.{index}.{llama_module}.{kind}"] = piece
    return converted


def llama_config(config: ModelConfig, eos_id: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
    }


def export_hf(checkpoint_dir: str | Path, output_dir: str | Path) -> Path:
    """Write the checkpoint's weights, config and tokenizer as a Hugging Face Llama folder (atomically)."""
    state, meta = load_checkpoint(Path(checkpoint_dir))
    config = ModelConfig(**meta["model_config"])
    if config.moe:
        raise ValueError("a mixture-of-experts checkpoint has no Llama equivalent: export covers dense models")
    weights = {name: tensor.to(torch.float32).contiguous() for name, tensor in llama_state_dict(state["model"], config).items()}
    output_dir = Path(output_dir)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(llama_config(config, meta["eos_id"]), indent=2), encoding="utf-8")
        (tmp / TOKENIZER_FILE).write_bytes((Path(checkpoint_dir) / TOKENIZER_FILE).read_bytes())
        for name, content in hf_tokenizer_files(config.max_seq_len).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return output_dir


def register_model(run_id: str, export_dir: str | Path, name: str) -> int:
    """Log the exported folder to the run and make it a new version of registered model `name`; returns the version."""
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        mlflow.log_artifacts(str(export_dir), HF_ARTIFACT_PATH)
        source = mlflow.get_artifact_uri(HF_ARTIFACT_PATH)
    registry = client()
    if not registry.search_registered_models(f"name = '{name}'"):
        registry.create_registered_model(name, description="tinylm models, exported as Hugging Face Llama folders")
    return int(registry.create_model_version(name, source, run_id=run_id).version)
