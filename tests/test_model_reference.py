"""Every command names a model the same five ways, and a run id is found in the workspace before MLflow is asked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tinylm.config import TokenizerConfig
from tinylm.export.hf import export_hf
from tinylm.inference.generate import load_model
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import save_checkpoint
from tinylm.storage.layout import run_checkpoints
from tinylm.storage.manifest import file_sha256
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import EOS, TOKENIZER_FILE, load_tokenizer
from tinylm.weights.reference import checkpoint_name, locate_model, model_weights

RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def tokenizer(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(small_corpus, directory, TokenizerConfig(vocab_size=300))
    return directory


def save_step(run_dir: Path, step: int, tokenizer: Path) -> Path:
    """A whole-model checkpoint at `step`, its weights seeded by the step so two steps differ."""
    config = ModelConfig(
        vocab_size=load_tokenizer(tokenizer).get_vocab_size(), dim=32, n_layers=1, n_heads=2, n_kv_heads=1
    )
    torch.manual_seed(step)
    meta = {
        "model_config": dataclasses.asdict(config),
        "cursor": {"shard": 0, "batch": 0, "step": step},
        "tokenizer_sha256": file_sha256(tokenizer / TOKENIZER_FILE),
        "eos_id": load_tokenizer(tokenizer).token_to_id(EOS),
    }
    files = {TOKENIZER_FILE: tokenizer / TOKENIZER_FILE}
    return save_checkpoint(run_dir / checkpoint_name(step), {"model": Transformer(config).state_dict()}, meta, files)


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def test_a_run_id_a_run_directory_and_its_newest_step_are_one_model(tokenizer, tmp_path, monkeypatch):
    # A tracking server that cannot answer: a run id with checkpoints in the workspace never asks it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    run_dir = run_checkpoints(tmp_path, RUN)
    save_step(run_dir, 4, tokenizer)
    newest = save_step(run_dir, 8, tokenizer)
    forms = [RUN, str(run_dir), str(newest)]
    located = [locate_model(form, tmp_path, tmp_path / "scratch") for form in forms]
    assert {(found.directory, found.run_id, found.step, found.exported) for found in located} == {
        (newest, RUN, 8, False)
    }
    assert same_weights(load_model(RUN, tmp_path).model.state_dict(), load_model(str(newest)).model.state_dict())


def test_an_older_step_and_an_exported_folder_are_found_as_themselves(tokenizer, tmp_path):
    run_dir = run_checkpoints(tmp_path, RUN)
    older = save_step(run_dir, 4, tokenizer)
    save_step(run_dir, 8, tokenizer)
    exported = export_hf(older, tmp_path / "hf")
    found = locate_model(str(exported), tmp_path, tmp_path / "scratch")
    assert (found.exported, found.run_id, found.directory) == (True, None, exported)
    older_weights, _ = model_weights(locate_model(str(older), tmp_path, tmp_path / "scratch"), tmp_path)
    exported_weights, _ = model_weights(found, tmp_path)
    assert same_weights(
        older_weights, {name: tensor.to(older_weights[name].dtype) for name, tensor in exported_weights.items()}
    )
    with pytest.raises(ValueError, match="exported folder: export needs a tinylm checkpoint"):
        found.checkpoint("export")


def test_a_step_outside_a_workspace_names_no_run(tokenizer, tmp_path):
    step = save_step(tmp_path / "copied", 3, tokenizer)
    assert locate_model(str(step), None, tmp_path / "scratch").run_id is None


@pytest.mark.parametrize("reference", ["not-a-model", "workspace/checkpoints/typo", "0123"])
def test_a_reference_of_none_of_the_five_forms_is_one_line_naming_them(reference, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=f"^{reference} names no model: give an MLflow run id.*models:/NAME/VERSION$"
    ):
        locate_model(reference, tmp_path, tmp_path / "scratch")


def test_a_run_directory_without_a_complete_step_is_refused(tokenizer, tmp_path):
    run_dir = run_checkpoints(tmp_path, RUN)
    (run_dir / "step-00000002").mkdir(parents=True)  # a save cut off before its checkpoint.json
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        locate_model(str(run_dir), tmp_path, tmp_path / "scratch")
