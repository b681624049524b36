"""Model shape, kept apart from the torch code so configs load without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Shape of the transformer. `vocab_size` None means: take it from the tokenizer."""

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

    def validate(self) -> None:
        if self.vocab_size is None:
            raise ValueError("vocab_size is not set: take it from the tokenizer before building the model")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
