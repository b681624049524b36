"""Our weights and shape under Hugging Face Llama's names, as torchtitan's `state_dict_adapter.py` keeps them beside the
model.

The dense model is Llama weight for weight (half-split RoPE, tied embeddings); only the
fused projections differ, and they split back exactly.
"""

from __future__ import annotations

import torch

from tinylm.model.config import ModelConfig

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


def tinylm_state_dict(llama: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """`llama_state_dict` undone: an exported folder's weights under our names, Llama's projections fused again."""
    state = {"tok_embeddings.weight": llama["model.embed_tokens.weight"], "norm.weight": llama["model.norm.weight"]}
    state["output.weight"] = llama.get("lm_head.weight", state["tok_embeddings.weight"])
    for index in range(config.n_layers):
        for module, llama_modules in _LAYER_NAMES.items():
            kind = "weight"
            pieces = [llama[f"model.layers.{index}.{name}.{kind}"] for name in llama_modules]
            state[f"layers.{index}.{module}.{kind}"] = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return state


def model_config_of(llama: dict) -> ModelConfig:
    """The shape of an exported folder's `config.json` (one `llama_config` wrote, or any dense tied Llama)."""
    return ModelConfig(
        vocab_size=llama["vocab_size"],
        dim=llama["hidden_size"],
        n_layers=llama["num_hidden_layers"],
        n_heads=llama["num_attention_heads"],
        n_kv_heads=llama.get("num_key_value_heads", llama["num_attention_heads"]),
        hidden_dim=llama["intermediate_size"],
        max_seq_len=llama["max_position_embeddings"],
        rope_theta=llama.get("rope_theta", 10_000.0),
        norm_eps=llama.get("rms_norm_eps", 1e-6),
    )
