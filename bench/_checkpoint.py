"""A MiniMind2-Small-shaped checkpoint with seeded random weights, for the benchmarks that time a model's use.

Speed depends on the shape, not on what was learned. Not a benchmark itself (`make bench` skips `_*.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from _corpus import write_bilingual_corpus

from tinylm.config import TokenizerConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import save_checkpoint
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import EOS, TOKENIZER_FILE, load_tokenizer

SHAPE = ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2, max_seq_len=1024)


def write_checkpoint(root: Path, shape: ModelConfig = SHAPE) -> Path:
    """A tokenizer trained on the bundled samples and a random model of `shape`, saved as a tinylm checkpoint."""
    write_bilingual_corpus(root / "corpus", copies=1)
    train_tokenizer(
        root / "corpus", root / "tokenizer", TokenizerConfig(vocab_size=shape.vocab_size, max_text_bytes=4_000_000)
    )
    torch.manual_seed(0)
    model = Transformer(shape)
    meta = {
        "cursor": {"shard": 0, "batch": 0, "step": 0},
        "model_config": dataclasses.asdict(shape),
        "tokenizer_sha256": "bench",
        "eos_id": load_tokenizer(root / "tokenizer").token_to_id(EOS),
        "loss": 0.0,
    }
    return save_checkpoint(
        root / "checkpoint", {"model": model.state_dict()}, meta, {TOKENIZER_FILE: root / "tokenizer" / TOKENIZER_FILE}
    )
