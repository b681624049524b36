"""Load a checkpoint (a local directory or an MLflow run's newest) and sample text from it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import download_checkpoint, load_checkpoint
from tinylm.tasks.tokenizer import EOS, IM_END, load_tokenizer


def resolve_checkpoint(checkpoint: str, scratch: Path) -> Path:
    """A path is used as is; anything else is taken for an MLflow run id."""
    path = Path(checkpoint)
    if path.exists():
        return path
    downloaded = download_checkpoint(checkpoint, scratch)
    if downloaded is None:
        raise FileNotFoundError(f"{checkpoint} is neither a checkpoint directory nor an MLflow run with a checkpoint")
    return downloaded


def generate_text(checkpoint: str, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        directory = resolve_checkpoint(checkpoint, Path(scratch))
        state, meta = load_checkpoint(directory)
        tokenizer = load_tokenizer(directory)
    model = Transformer(ModelConfig(**meta["model_config"]))
    model.load_state_dict(state["model"])
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids or [meta["eos_id"]]
    stop_ids = {tokenizer.token_to_id(EOS), tokenizer.token_to_id(IM_END)}
    generator = torch.Generator().manual_seed(seed)
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=1.0)
    new = list(stream_tokens(model, prompt_ids, max_new_tokens, sampling, stop_ids, generator))
    return tokenizer.decode(prompt_ids + new, skip_special_tokens=True)
