"""Small builders shared by tests."""

from tinylm.config import TrainConfig
from tinylm.model.config import ModelConfig


def tiny_train_config(**overrides: object) -> TrainConfig:
    """A model small enough that a few training steps take well under a second."""
    settings = dict(
        model=ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32),
        seq_len=32,
        batch_size=4,
        max_shards=3,
        max_steps_per_shard=6,
        warmup_steps=2,
        learning_rate=3e-3,
        log_every=1,
    )
    return TrainConfig(**(settings | overrides))
