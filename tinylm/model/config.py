"""Model shape, kept apart from the torch code so configs load without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Shape of the transformer. `vocab_size` None means: take it from the tokenizer.

    With `moe`, every feed-forward is a mixture of experts: `n_shared_experts` that see
    every token plus `n_routed_experts` of which a learned gate picks `experts_per_token`
    per token, trained with an auxiliary loss (weight `aux_loss_weight`) that keeps the
    gate from sending everything to a few experts.
    """

    vocab_size: int | None = None
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    hidden_dim: int | None = None
    multiple_of: int = 64
    max_seq_len: int = 512
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    moe: bool = False
    n_routed_experts: int = 4
    n_shared_experts: int = 1
    experts_per_token: int = 2
    moe_hidden_dim: int | None = None
    aux_loss_weight: float = 0.01

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        """SwiGLU hidden size: 8/3 of dim (same parameters as a 4x GELU MLP), rounded up."""
        if self.hidden_dim is not None:
            return self.hidden_dim
        hidden = int(8 * self.dim / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def expert_dim(self) -> int:
        """Hidden size of each expert (the dense SwiGLU size unless set)."""
        return self.moe_hidden_dim or self.ffn_dim

    def validate(self) -> None:
        if self.vocab_size is None:
            raise ValueError("vocab_size is not set: take it from the tokenizer before building the model")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.moe and not 0 < self.experts_per_token <= self.n_routed_experts:
            raise ValueError(f"experts_per_token {self.experts_per_token} must be between 1 and n_routed_experts {self.n_routed_experts}")
