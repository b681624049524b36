"""A small decoder-only transformer: RMSNorm, RoPE, grouped-query attention, SwiGLU (or a
mixture of SwiGLU experts), tied embeddings, and a KV cache for generation.

Read it top to bottom: norm, rotary embeddings, cache, attention, feed-forward, experts,
block, model. The dense model is Llama's architecture, weight for weight.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.model.config import ModelConfig

YARN_BETA_FAST, YARN_BETA_SLOW = 32, 1  # rotations over the trained context: YaRN's (and transformers') defaults


class RMSNorm(nn.Module):
    """Scale by the root mean square, no mean subtraction and no bias: cheaper than LayerNorm, as good."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        return (wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every (position, frequency) pair, each frequency twice: shaped (seq, head_dim)."""
    frequencies = 1.0 / (
        config.rope_theta ** (torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim)
    )
    scale = 1.0
    if config.yarn_factor != 1:
        frequencies, scale = yarn_frequencies(frequencies, config)
    angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float32), frequencies)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos() * scale, angles.sin() * scale


def yarn_frequencies(frequencies: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al., 2023) as transformers computes `rope_type: yarn`, so an export's `rope_scaling` gives the
    same logits there: frequencies that turn fewer than `beta_slow` = 1 times over the trained context are
    interpolated (divided by the factor), those that turn more than `beta_fast` = 32 times are kept, a linear ramp
    between; the tables are scaled by the attention factor. Written here because transformers is not a dependency
    of inference, and its rope functions take a whole transformers config.
    """
    dim, factor, trained = config.head_dim, config.yarn_factor, config.trained_context

    def dimension_turning(rotations: float) -> float:
        return dim * math.log(trained / (rotations * 2 * math.pi)) / (2 * math.log(config.rope_theta))

    low = max(math.floor(dimension_turning(YARN_BETA_FAST)), 0)
    high = min(math.ceil(dimension_turning(YARN_BETA_SLOW)), dim - 1)
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / max(high - low, 0.001)).clamp(0, 1)
    kept = 1 - ramp
    stretched = frequencies / factor * (1 - kept) + frequencies * kept
    attention = config.yarn_attention_factor or 0.1 * math.log(factor) + 1.0
    return stretched, attention


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate dimension i with dimension i + head_dim/2 of x (batch, heads, seq, head_dim) by its position's angle.

    The half-split pairing (rather than adjacent pairs) is Llama's as `transformers` has
    it, so exported weights load into `LlamaForCausalLM` without permuting q and k.
    """
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-second, first), dim=-1) * sin.to(x.dtype)


class KVCache:
    """Keys and values of the positions a model has already seen, per layer, for generation.

    Preallocated to `max_seq_len`, so each new token costs one attention row instead of
    a pass over the whole sequence. Sequences of different lengths generate together
    left-padded: `pads` holds each row's padding, which no position attends to and which
    the rotary positions skip, so a row reads as if it were alone.
    """

    def __init__(
        self,
        config: ModelConfig,
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
        pads: torch.Tensor | None = None,
    ) -> None:
        shape = (batch, config.n_kv_heads, config.max_seq_len, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.length = 0
        self.pads = None if pads is None or not pads.any() else pads.to(device)

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order, repeats allowed: a prompt read once continues as many sequences."""
        self.keys = [keys.index_select(0, rows) for keys in self.keys]
        self.values = [values.index_select(0, rows) for values in self.values]
        self.pads = None if self.pads is None else self.pads.index_select(0, rows)


def attention_mask(start: int, seq: int, pads: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Which keys each of `seq` new positions after `start` cached ones attends to: None where SDPA's own causal
    rule is right (a fresh unpadded sequence, or one new token), else (seq, keys), or (batch, 1, seq, keys) with
    each row's left padding hidden. A padding position attends to itself alone, so that no row of the softmax is
    empty (an empty one is NaN)."""
    if pads is None and (start == 0 or seq == 1):
        return None
    rows = torch.arange(start, start + seq, device=device)[:, None]
    keys = torch.arange(start + seq, device=device)[None]
    causal = keys <= rows
    if pads is None:
        return causal
    return ((causal & (keys >= pads[:, None, None])) | (keys == rows))[:, None]


class Attention(nn.Module):
    """Causal self-attention with fewer key/value heads than query heads (GQA)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.wqkv = nn.Linear(config.dim, (config.n_heads + 2 * config.n_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, seq, _ = x.shape
        q, k, v = self.wqkv(x).split(
            [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], dim=-1
        )
        q = q.view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            keys, values = cache
            keys[:, :, start : start + seq], values[:, :, start : start + seq] = k, v
            k, v = keys[:, :, : start + seq], values[:, :, : start + seq]
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and start == 0,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=True,
        )
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """SwiGLU: silu(x W1) * (x W3), projected back by W2; W1 and W3 are one matrix, one matmul."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.dropout(self.w2(F.silu(gate) * up))


class MixtureOfExperts(nn.Module):
    """Shared experts see every token; a softmax gate sends each token to its top-k routed experts.

    The auxiliary loss is the Switch Transformer's: the number of experts times the sum,
    over experts, of (share of routed slots it got) x (mean gate probability it got). It
    is 1 when the load is even and grows as the gate favours a few experts.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.top_k = config.experts_per_token
        self.gate = nn.Linear(config.dim, config.n_routed_experts, bias=False)
        self.experts = nn.ModuleList(
            FeedForward(config.dim, config.expert_dim, config.dropout) for _ in range(config.n_routed_experts)
        )
        self.shared = (
            FeedForward(config.dim, config.expert_dim * config.n_shared_experts, config.dropout)
            if config.n_shared_experts
            else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, x.shape[-1])
        probabilities = F.softmax(self.gate(flat).float(), dim=-1)
        weights, chosen = probabilities.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = self.shared(flat) if self.shared is not None else torch.zeros_like(flat)
        for index, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == index)
            if token.numel():
                out = out.index_add(0, token, expert(flat[token]) * weights[token, slot, None])
        load = F.one_hot(chosen, len(self.experts)).float().mean(dim=(0, 1))
        aux_loss = len(self.experts) * (load * probabilities.mean(dim=0)).sum()
        return out.view_as(x), aux_loss


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = (
            MixtureOfExperts(config) if config.moe else FeedForward(config.dim, config.ffn_dim, config.dropout)
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x + self.attention(self.attention_norm(x), cos, sin, cache, start, mask)
        if isinstance(self.feed_forward, MixtureOfExperts):
            out, aux_loss = self.feed_forward(self.ffn_norm(x))
            return x + out, aux_loss
        return x + self.feed_forward(self.ffn_norm(x)), None


class Output(NamedTuple):
    logits: torch.Tensor
    loss: torch.Tensor | None
    aux_loss: torch.Tensor | None


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Trainable parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Output:
        """Logits for every position; with `targets`, the (masked) cross entropy plus the MoE balance loss.

        With a `cache`, `tokens` continue the sequence the cache holds, and are added to it.
        """
        start = cache.length if cache is not None else 0
        seq = tokens.shape[1]
        if start + seq > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + seq} tokens is longer than max_seq_len {self.config.max_seq_len}")
        x = self.tok_embeddings(tokens)
        pads = cache.pads if cache is not None else None
        if pads is None:
            cos, sin = self.rope_cos[start : start + seq], self.rope_sin[start : start + seq]
        else:
            positions = (torch.arange(start, start + seq, device=tokens.device)[None] - pads[:, None]).clamp(min=0)
            cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]
        mask = attention_mask(start, seq, pads, tokens.device)
        aux_losses = []
        for index, layer in enumerate(self.layers):
            layer_cache = (cache.keys[index], cache.values[index]) if cache is not None else None
            x, aux_loss = layer(x, cos, sin, layer_cache, start, mask)
            if aux_loss is not None:
                aux_losses.append(aux_loss)
        if cache is not None:
            cache.length += seq
        logits = self.output(self.norm(x))
        aux = torch.stack(aux_losses).mean() if aux_losses else None
        if targets is None:
            return Output(logits, None, aux)
        if loss_mask is None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        else:
            mask = loss_mask.flatten().float()
            losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
            loss = (losses * mask).sum() / mask.sum().clamp(min=1)
        if aux is not None:
            loss = loss + self.config.aux_loss_weight * aux
        return Output(logits, loss, aux)
