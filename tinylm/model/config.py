"""Model shape, kept apart from the torch code so configs load without importing torch.

A dataclass the torch code builds from; its fields carry pydantic descriptions, so the Prefect form and the
config reference describe them like the settings models' fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field


@dataclass
class ModelConfig:
    """Shape of the transformer. `vocab_size` None means: take it from the tokenizer.

    With `moe`, every feed-forward is a mixture of experts: `n_shared_experts` that see
    every token plus `n_routed_experts` of which a learned gate picks `experts_per_token`
    per token, trained with an auxiliary loss (weight `aux_loss_weight`) that keeps the
    gate from sending everything to a few experts.
    """

    vocab_size: Annotated[int | None, Field(description="tokens the model knows; None = the tokenizer's vocabulary")] = None
    dim: Annotated[int, Field(description="width of the residual stream (hidden size)")] = 256
    n_layers: Annotated[int, Field(description="transformer blocks")] = 4
    n_heads: Annotated[int, Field(description="attention heads; dim must divide by it")] = 8
    n_kv_heads: Annotated[int, Field(description="key/value heads shared by groups of query heads (GQA); divides n_heads")] = 2
    hidden_dim: Annotated[int | None, Field(description="feed-forward (SwiGLU) width; None = 8/3 of dim, rounded up to multiple_of")] = None
    multiple_of: Annotated[int, Field(description="the feed-forward width is rounded up to a multiple of this")] = 64
    max_seq_len: Annotated[int, Field(description="the context: most tokens the model attends over")] = 512
    rope_theta: Annotated[float, Field(description="base of the rotary position embedding's frequencies")] = 1_000_000.0
    norm_eps: Annotated[float, Field(description="epsilon of the RMS norms")] = 1e-5
    dropout: Annotated[float, Field(description="dropout on attention and feed-forward outputs while training")] = 0.0
    moe: Annotated[bool, Field(description="make every feed-forward a mixture of experts")] = False
    n_routed_experts: Annotated[int, Field(description="mixture of experts: experts the gate chooses among")] = 4
    n_shared_experts: Annotated[int, Field(description="mixture of experts: experts that see every token")] = 1
    experts_per_token: Annotated[int, Field(description="mixture of experts: routed experts each token goes to")] = 2
    moe_hidden_dim: Annotated[int | None, Field(description="mixture of experts: each expert's width; None = the dense width")] = None
    aux_loss_weight: Annotated[float, Field(description="mixture of experts: weight of the load-balancing loss")] = 0.01

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
