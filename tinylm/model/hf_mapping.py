"""Our weights and shape under a Hugging Face architecture's names, as torchtitan's `state_dict_adapter.py` keeps
them beside the model.

Each tinylm shape has one architecture that transformers, vLLM and llama.cpp all run with the same logits:

- dense: `LlamaForCausalLM` (half-split RoPE, tied embeddings); only our fused projections differ, and they split
  back exactly.
- mixture of experts without shared experts: `MixtralForCausalLM`, whose router is ours (softmax over all experts,
  top-k, weights renormalised over the k).
- mixture of experts with shared experts: `GraniteMoeSharedForCausalLM`, the one architecture the three tools share
  whose shared expert is added ungated, as ours is (Qwen2-MoE gates its shared expert with a sigmoid, DeepSeek's
  attention is MLA, Qwen3-MoE normalises q and k). Its routing is Mixtral's, its experts are ours stacked, and its
  multipliers are set to what a plain transformer does.

A mapping is a list of links, each one tensor renamed, one of ours split into several of theirs (fused
projections), or several of ours stacked into one of theirs (Granite's experts), so the same list converts both
ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinylm.model.config import ModelConfig
from tinylm.model.transformer import YARN_BETA_FAST, YARN_BETA_SLOW

LLAMA, MIXTRAL, GRANITE_MOE = "LlamaForCausalLM", "MixtralForCausalLM", "GraniteMoeSharedForCausalLM"
_MODEL_TYPES = {LLAMA: "llama", MIXTRAL: "mixtral", GRANITE_MOE: "granitemoeshared"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Link:
    """Tensors of ours and theirs that hold the same numbers: one to one, one split in `sizes` (concatenated along
    the first dimension), or several stacked along a new first dimension."""

    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    sizes: tuple[int, ...] = ()


def architecture(config: ModelConfig) -> str:
    if not config.moe:
        return LLAMA
    return GRANITE_MOE if config.n_shared_experts else MIXTRAL


def links(config: ModelConfig) -> list[Link]:
    """Every weight of a model of this shape, under our names and the exported architecture's."""
    found = [
        Link(("tok_embeddings.weight",), ("model.embed_tokens.weight",)),
        Link(("norm.weight",), ("model.norm.weight",)),
    ]
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    family = architecture(config)
    for index in range(config.n_layers):
        ours, theirs = f"layers.{index}.", f"model.layers.{index}."
        found += [
            Link(
                (ours + "attention.wqkv.weight",),
                tuple(f"{theirs}self_attn.{p}_proj.weight" for p in "qkv"),
                (q, kv, kv),
            ),
            Link((ours + "attention.wo.weight",), (theirs + "self_attn.o_proj.weight",)),
            Link((ours + "attention_norm.weight",), (theirs + "input_layernorm.weight",)),
            Link((ours + "ffn_norm.weight",), (theirs + "post_attention_layernorm.weight",)),
        ]
        found += _feed_forward_links(config, family, ours + "feed_forward.", theirs)
    return found


def _feed_forward_links(config: ModelConfig, family: str, ours: str, theirs: str) -> list[Link]:
    if family == LLAMA:
        return _swiglu(ours, theirs + "mlp.", config.ffn_dim)
    experts = range(config.n_routed_experts)
    if family == MIXTRAL:
        moe = theirs + "block_sparse_moe."
        found = [Link((ours + "gate.weight",), (moe + "gate.weight",))]
        for expert in experts:
            found += [
                Link(
                    (f"{ours}experts.{expert}.w13.weight",),
                    (f"{moe}experts.{expert}.w1.weight", f"{moe}experts.{expert}.w3.weight"),
                    (config.expert_dim,) * 2,
                ),
                Link((f"{ours}experts.{expert}.w2.weight",), (f"{moe}experts.{expert}.w2.weight",)),
            ]
        return found
    moe = theirs + "block_sparse_moe."
    return [
        Link((ours + "gate.weight",), (moe + "router.layer.weight",)),
        Link(tuple(f"{ours}experts.{expert}.w13.weight" for expert in experts), (moe + "input_linear.weight",)),
        Link(tuple(f"{ours}experts.{expert}.w2.weight" for expert in experts), (moe + "output_linear.weight",)),
        Link((ours + "shared.w13.weight",), (theirs + "shared_mlp.input_linear.weight",)),
        Link((ours + "shared.w2.weight",), (theirs + "shared_mlp.output_linear.weight",)),
    ]


def _swiglu(ours: str, theirs: str, width: int) -> list[Link]:
    return [
        Link((ours + "w13.weight",), (theirs + "gate_proj.weight", theirs + "up_proj.weight"), (width, width)),
        Link((ours + "w2.weight",), (theirs + "down_proj.weight",)),
    ]


def hf_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our weights under the exported architecture's names. The tied output matrix is left out: the architecture
    ties it to the embeddings itself."""
    converted: dict[str, torch.Tensor] = {}
    for link in links(config):
        tensors = [state[name] for name in link.ours]
        if len(link.theirs) > 1:
            tensors = list(tensors[0].split(link.sizes))
        elif len(link.ours) > 1:
            tensors = [torch.stack(tensors)]
        converted.update(zip(link.theirs, tensors, strict=True))
    return converted


def tinylm_state_dict(hf: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """`hf_state_dict` undone: an exported folder's weights under our names, projections fused and experts unstacked
    again."""
    state: dict[str, torch.Tensor] = {}
    for link in links(config):
        tensors = [hf[name] for name in link.theirs]
        if len(link.theirs) > 1:
            tensors = [torch.cat(tensors)]
        elif len(link.ours) > 1:
            tensors = list(tensors[0].unbind(0))
        state.update(zip(link.ours, tensors, strict=True))
    state["output.weight"] = hf.get("lm_head.weight", state["tok_embeddings.weight"])
    return state


def hf_config(config: ModelConfig, eos_id: int, dtype: str = "float32") -> dict:
    """The exported folder's `config.json`."""
    family = architecture(config)
    found = {
        "architectures": [family],
        "model_type": _MODEL_TYPES[family],
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.expert_dim if config.moe else config.ffn_dim,
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
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": dtype,
    }
    if config.yarn_factor != 1:
        found["rope_scaling"] = _yarn_scaling(config)
    if family == LLAMA:
        return found | {"mlp_bias": False}
    found |= {
        "num_local_experts": config.n_routed_experts,
        "num_experts_per_tok": config.experts_per_token,
        "router_aux_loss_coef": config.aux_loss_weight,
        "output_router_logits": False,
    }
    if family == MIXTRAL:
        return found
    return found | {
        "shared_intermediate_size": config.expert_dim * config.n_shared_experts,
        "attention_multiplier": config.head_dim**-0.5,
        "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0,
        "logits_scaling": 1.0,
    }


def _yarn_scaling(config: ModelConfig) -> dict:
    """`rope_scaling` as Qwen's configs write YaRN (transformers, vLLM and llama.cpp's converter read it)."""
    scaling = {
        "rope_type": "yarn",
        "factor": config.yarn_factor,
        "original_max_position_embeddings": config.trained_context,
        "beta_fast": float(YARN_BETA_FAST),
        "beta_slow": float(YARN_BETA_SLOW),
    }
    if config.yarn_attention_factor is not None:
        scaling["attention_factor"] = config.yarn_attention_factor
    return scaling


def _yarn_fields(hf: dict) -> dict:
    """The model settings of a folder's YaRN `rope_scaling` (or transformers 5's `rope_parameters`)."""
    scaling = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return {}
    beta = (scaling.get("beta_fast", YARN_BETA_FAST), scaling.get("beta_slow", YARN_BETA_SLOW))
    if kind != "yarn" or beta != (YARN_BETA_FAST, YARN_BETA_SLOW) or scaling.get("mscale"):
        raise ValueError(
            f"rope scaling {scaling} is not one tinylm computes: it reads YaRN with beta_fast 32 and beta_slow 1"
        )
    return {
        "yarn_factor": scaling["factor"],
        "yarn_original_max_seq_len": scaling.get("original_max_position_embeddings"),
        "yarn_attention_factor": scaling.get("attention_factor"),
    }


def model_config_of(hf: dict) -> ModelConfig:
    """The shape of an exported folder's `config.json`: one `hf_config` wrote, or any tied model of the three
    architectures that tinylm's blocks compute exactly."""
    family = (hf.get("architectures") or [LLAMA])[0]
    if family not in _MODEL_TYPES:
        raise ValueError(f"a {family} model is not one tinylm runs: it reads {', '.join(_MODEL_TYPES)} folders")
    shape = {
        "vocab_size": hf["vocab_size"],
        "dim": hf["hidden_size"],
        "n_layers": hf["num_hidden_layers"],
        "n_heads": hf["num_attention_heads"],
        "n_kv_heads": hf.get("num_key_value_heads", hf["num_attention_heads"]),
        "hidden_dim": hf["intermediate_size"],
        "max_seq_len": hf["max_position_embeddings"],
        "rope_theta": hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta", 10_000.0),
        "norm_eps": hf.get("rms_norm_eps", 1e-6),
        **_yarn_fields(hf),
    }
    if family == LLAMA:
        return ModelConfig(**shape)
    plain = {"attention_multiplier": (hf["hidden_size"] // hf["num_attention_heads"]) ** -0.5}
    plain |= dict.fromkeys(("embedding_multiplier", "residual_multiplier", "logits_scaling"), 1.0)
    scaled = [key for key, value in plain.items() if abs(hf.get(key, value) - value) > 1e-6 * value]
    if scaled:
        raise ValueError(f"{', '.join(scaled)} scale what a plain transformer computes: tinylm has no equivalent")
    shared, width = hf.get("shared_intermediate_size", 0), hf["intermediate_size"]
    if shared % width:
        raise ValueError(
            f"shared_intermediate_size {shared} is not a multiple of intermediate_size {width}: tinylm's shared "
            "experts are as wide as its routed ones"
        )
    return ModelConfig(
        **shape,
        moe=True,
        n_routed_experts=hf["num_local_experts"],
        experts_per_token=hf["num_experts_per_tok"],
        n_shared_experts=shared // width,
        moe_hidden_dim=width,
    )
