"""Load a checkpoint (a local directory or an MLflow run's newest) and generate from it: text or chat."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException
from safetensors.torch import load_file
from tokenizers import Tokenizer

from tinylm.model.generation import Sampling, stream_tokens
from tinylm.model.hf_mapping import model_config_of, tinylm_state_dict
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import META_FILE, load_checkpoint, newest_local_checkpoint
from tinylm.storage.manifest import file_sha256
from tinylm.tokens.chat_template import ChatEncoder, Message
from tinylm.tokens.tokenizer_files import EOS, IM_END, TOKENIZER_FILE, load_tokenizer
from tinylm.tracking.checkpoint_artifacts import download_checkpoint
from tinylm.weights.resolve import full_weights

HF_CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def resolve_checkpoint(checkpoint: str, scratch: Path) -> Path:
    """A checkpoint directory is used as is; a run's checkpoint directory (`<workspace>/checkpoints/<run>`, which
    the pipeline's summary prints) means its newest complete step; anything else is taken for an MLflow run id."""
    path = Path(checkpoint)
    if path.is_dir() and not (path / META_FILE).exists():
        newest = newest_local_checkpoint(path)
        if newest is None:
            raise FileNotFoundError(f"{path} holds no complete checkpoint (no step directory with {META_FILE}): name another run or step")
        return newest
    if path.exists():
        return path
    try:
        downloaded = download_checkpoint(checkpoint, scratch)
    except MlflowException:
        downloaded = None
    if downloaded is None:
        raise FileNotFoundError(
            f"{checkpoint} is neither a checkpoint directory, an exported folder nor an MLflow run with a checkpoint "
            "(a run id is looked up in the tracking store in use: check --workspace or MLFLOW_TRACKING_URI)"
        )
    return downloaded


@dataclass(frozen=True)
class LoadedModel:
    model: Transformer
    tokenizer: Tokenizer
    tokenizer_sha256: str  # of its tokenizer.json, as the data stages' manifests record theirs

    @functools.cached_property
    def chat(self) -> ChatEncoder:
        """Built once per loaded model: it copies the tokenizer to encode message text literally."""
        return ChatEncoder(self.tokenizer)

    @property
    def stop_ids(self) -> set[int]:
        return {self.tokenizer.token_to_id(EOS), self.tokenizer.token_to_id(IM_END)}


def load_model(checkpoint: str, workspace: str | Path | None = None) -> LoadedModel:
    """A model ready to generate, from a checkpoint directory, an MLflow run id (its newest checkpoint), an
    exported Hugging Face folder, or a registered model (`models:/name/version`). An adapter checkpoint's
    base is looked up in `workspace`, else in MLflow."""
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint.startswith("models:/"):
            import mlflow

            return _load_exported(Path(mlflow.artifacts.download_artifacts(artifact_uri=checkpoint, dst_path=scratch)))
        if (Path(checkpoint) / HF_CONFIG_FILE).exists():
            return _load_exported(Path(checkpoint))
        directory = resolve_checkpoint(checkpoint, Path(scratch))
        weights, config = full_weights(load_checkpoint(directory), None if workspace is None else Path(workspace))
        tokenizer, tokenizer_sha256 = load_tokenizer(directory), file_sha256(directory / TOKENIZER_FILE)
    model = Transformer(config)
    model.load_state_dict(weights)
    return LoadedModel(model.eval(), tokenizer, tokenizer_sha256)


def _load_exported(folder: Path) -> LoadedModel:
    """An exported Llama folder (`tinylm export`), its weights back under tinylm's names."""
    config = model_config_of(json.loads((folder / HF_CONFIG_FILE).read_text(encoding="utf-8")))
    model = Transformer(config)
    model.load_state_dict(tinylm_state_dict(load_file(str(folder / WEIGHTS_FILE)), config))
    return LoadedModel(model.eval(), load_tokenizer(folder), file_sha256(folder / TOKENIZER_FILE))


@dataclass
class Finish:
    """How a generation ended, filled in as it runs: its new tokens, and `stop` (a stop token) or `length`."""

    tokens: int = 0
    reason: str = "length"


def stream_text(
    loaded: LoadedModel,
    prompt_ids: list[int],
    max_new_tokens: int,
    sampling: Sampling,
    generator: torch.Generator,
    finish: Finish | None = None,
) -> Iterator[str]:
    """New text as it is generated. Byte-level tokens can end inside a multi-byte character:
    such a tail is held back until a later token completes it, and flushed as it is at the end."""
    finish = finish if finish is not None else Finish()
    new: list[int] = []
    shown = text = ""
    for token in stream_tokens(loaded.model, prompt_ids, max_new_tokens, sampling, loaded.stop_ids, generator):
        if token in loaded.stop_ids:
            finish.reason = "stop"
            break
        new.append(token)
        finish.tokens = len(new)
        text = loaded.tokenizer.decode(new)
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    if len(text) > len(shown):
        yield text[len(shown) :]


def generate_text(checkpoint: str, prompt: str, max_new_tokens: int = 64, sampling: Sampling = Sampling(), seed: int = 0) -> str:
    """The prompt and its continuation."""
    loaded = load_model(checkpoint)
    prompt_ids = loaded.tokenizer.encode(prompt, add_special_tokens=False).ids or [loaded.tokenizer.token_to_id(EOS)]
    return prompt + "".join(stream_text(loaded, prompt_ids, max_new_tokens, sampling, torch.Generator().manual_seed(seed)))


def chat_reply(
    loaded: LoadedModel, history: list[Message], max_new_tokens: int, sampling: Sampling, generator: torch.Generator
) -> Iterator[str]:
    """The assistant's next turn after `history`, streamed, encoded with the same template as the SFT data."""
    (prompt,) = loaded.chat.encode([history], generation_prompt=True)
    yield from stream_text(loaded, prompt.ids, max_new_tokens, sampling, generator)
