"""Model shape, kept apart from the torch code so configs load without importing torch.

A dataclass the torch code builds from; its fields carry pydantic descriptions, so the Prefect form and the
config reference describe them like the settings models' fields."""

from __future__ import annotations

import dataclasses
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

    vocab_size: Annotated[
        int | None, Field(ge=1, description="tokens the model knows; None = the tokenizer's vocabulary")
    ] = None
    dim: Annotated[int, Field(ge=1, description="width of the residual stream (hidden size)")] = 256
    n_layers: Annotated[int, Field(ge=1, description="transformer blocks")] = 4
    n_heads: Annotated[int, Field(ge=1, description="attention heads; dim must divide by it")] = 8
    n_kv_heads: Annotated[
        int, Field(ge=1, description="key/value heads shared by groups of query heads (GQA); divides n_heads")
    ] = 2
    hidden_dim: Annotated[
        int | None, Field(ge=1, description="feed-forward (SwiGLU) width; None = 8/3 of dim, rounded up to multiple_of")
    ] = None
    multiple_of: Annotated[
        int, Field(ge=1, description="the feed-forward width is rounded up to a multiple of this")
    ] = 64
    max_seq_len: Annotated[int, Field(ge=1, description="the context: most tokens the model attends over")] = 512
    rope_theta: Annotated[float, Field(gt=0, description="base of the rotary position embedding's frequencies")] = (
        1_000_000.0
    )
    yarn_factor: Annotated[
        float,
        Field(
            ge=1,
            description="YaRN rotary scaling: how many times its trained context the model reads; 1 = none (set by "
            "--context on chat, generate, serve and export)",
        ),
    ] = 1.0
    yarn_original_max_seq_len: Annotated[
        int | None,
        Field(ge=1, description="YaRN: the context the model was trained at; None = max_seq_len / yarn_factor"),
    ] = None
    yarn_attention_factor: Annotated[
        float | None,
        Field(gt=0, description="YaRN: scale of the rotary tables; None = 0.1 ln(yarn_factor) + 1 (MiniMind sets 1)"),
    ] = None
    norm_eps: Annotated[float, Field(gt=0, description="epsilon of the RMS norms")] = 1e-5
    dropout: Annotated[
        float, Field(ge=0, lt=1, description="dropout on attention and feed-forward outputs while training")
    ] = 0.0
    moe: Annotated[bool, Field(description="make every feed-forward a mixture of experts")] = False
    n_routed_experts: Annotated[int, Field(ge=1, description="mixture of experts: experts the gate chooses among")] = 4
    n_shared_experts: Annotated[int, Field(ge=0, description="mixture of experts: experts that see every token")] = 1
    experts_per_token: Annotated[
        int, Field(ge=1, description="mixture of experts: routed experts each token goes to")
    ] = 2
    moe_hidden_dim: Annotated[
        int | None, Field(ge=1, description="mixture of experts: each expert's width; None = the dense width")
    ] = None
    aux_loss_weight: Annotated[
        float, Field(ge=0, description="mixture of experts: weight of the load-balancing loss")
    ] = 0.01

    def __post_init__(self) -> None:
        """The shape's fields that must agree with each other, checked wherever a shape is made: a config file, the
        Prefect form (pydantic names the field in its error) or a checkpoint's meta."""
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(
                f"dim / n_heads is {self.head_dim}, odd: rotary embeddings turn pairs of dimensions, so make it even"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.moe and self.experts_per_token > self.n_routed_experts:
            raise ValueError(
                f"experts_per_token {self.experts_per_token} is more than n_routed_experts {self.n_routed_experts}"
            )

    @property
    def trained_context(self) -> int:
        """The context the rotary positions were trained at (max_seq_len unless YaRN stretches it)."""
        if self.yarn_factor == 1:
            return self.max_seq_len
        return self.yarn_original_max_seq_len or round(self.max_seq_len / self.yarn_factor)

    def with_context(self, context: int | None) -> ModelConfig:
        """This shape reading `context` positions: past the trained context, YaRN stretches the rotary positions by
        the ratio (as Qwen configures `rope_scaling`); at or under it, the shape as trained."""
        if context is None or context == self.max_seq_len:
            return self
        if context < 1:
            raise ValueError(f"a context of {context} tokens holds nothing: give at least 1")
        trained = self.trained_context
        if context <= trained:
            return dataclasses.replace(self, max_seq_len=context, yarn_factor=1.0, yarn_original_max_seq_len=None)
        return dataclasses.replace(
            self, max_seq_len=context, yarn_factor=context / trained, yarn_original_max_seq_len=trained
        )

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
