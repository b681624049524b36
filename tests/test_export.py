"""The Hugging Face export: every shape tinylm trains loads into transformers with our logits, in each dtype, and
reads back into tinylm as the same weights."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tinylm.config import TokenizerConfig
from tinylm.export.hf import export_hf
from tinylm.inference.generate import generate_text, load_model
from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling
from tinylm.model.hf_mapping import model_config_of
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import save_checkpoint
from tinylm.storage.manifest import file_sha256
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import EOS, TOKENIZER_FILE, load_tokenizer
from tinylm.weights.reference import locate_model, model_weights

transformers = pytest.importorskip("transformers")

DENSE = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
MOE_SHARED = dataclasses.replace(
    DENSE, moe=True, n_routed_experts=4, n_shared_experts=2, experts_per_token=2, moe_hidden_dim=48
)
MOE_ROUTED = dataclasses.replace(MOE_SHARED, n_shared_experts=0)
SHAPES = {"dense": DENSE, "moe-shared": MOE_SHARED, "moe-routed": MOE_ROUTED}
ARCHITECTURES = {
    "dense": "LlamaForCausalLM",
    "moe-shared": "GraniteMoeSharedForCausalLM",
    "moe-routed": "MixtralForCausalLM",
}


@pytest.fixture(scope="module")
def tokenizer(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(small_corpus, directory, TokenizerConfig(vocab_size=400))
    return directory


def random_checkpoint(
    directory: Path, config: ModelConfig, tokenizer: Path, seed: int = 0, spread: float = 8.0
) -> Path:
    """A checkpoint of untrained weights, spread wider than training's initialisation so that the router and the
    logits make clear choices (near-uniform logits would make an argmax hang on rounding)."""
    config = dataclasses.replace(config, vocab_size=load_tokenizer(tokenizer).get_vocab_size())
    torch.manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.endswith("norm.weight"):
                parameter.mul_(spread)
    meta = {
        "model_config": dataclasses.asdict(config),
        "cursor": {"shard": 0, "batch": 0, "step": 1},
        "tokenizer_sha256": file_sha256(tokenizer / TOKENIZER_FILE),
        "eos_id": load_tokenizer(tokenizer).token_to_id(EOS),
    }
    return save_checkpoint(directory, {"model": model.state_dict()}, meta, {TOKENIZER_FILE: tokenizer / TOKENIZER_FILE})


def ours(checkpoint: Path) -> Transformer:
    weights, config = model_weights(locate_model(str(checkpoint), None, checkpoint.parent), None)
    model = Transformer(config).eval()
    model.load_state_dict(weights)
    return model


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_exports_as_an_architecture_transformers_runs_with_our_logits(shape, tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", SHAPES[shape], tokenizer)
    exported = export_hf(checkpoint, tmp_path / "hf")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    assert type(theirs).__name__ == ARCHITECTURES[shape]
    model = ours(checkpoint)
    tokens = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(tokens).logits, theirs(tokens).logits
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4), (got - expected).abs().max()
    if SHAPES[shape].moe:
        assert model.config.n_shared_experts == SHAPES[shape].n_shared_experts


@pytest.mark.parametrize("shape", SHAPES)
def test_an_exported_folder_reads_back_as_the_same_weights(shape, tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", SHAPES[shape], tokenizer)
    exported = export_hf(checkpoint, tmp_path / "hf")
    back, config = model_weights(locate_model(str(exported), None, tmp_path), None)
    Transformer(config).load_state_dict(back)  # strict: every weight of the shape read back has its size
    expected = ours(checkpoint).state_dict()
    assert back.keys() == expected.keys()
    assert all(torch.equal(back[name], expected[name]) for name in back)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_exports_write_half_the_bytes_and_keep_the_logits_close(dtype, tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", MOE_SHARED, tokenizer)
    full = export_hf(checkpoint, tmp_path / "fp32")
    half = export_hf(checkpoint, tmp_path / dtype, dtype=dtype)
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == dtype
    full_bytes, half_bytes = ((folder / "model.safetensors").stat().st_size for folder in (full, half))
    assert half_bytes < 0.55 * full_bytes
    model = transformers.AutoModelForCausalLM.from_pretrained(str(half), dtype=torch.float32).eval()
    tokens = torch.randint(0, 400, (1, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = ours(checkpoint)(tokens).logits, model(tokens).logits
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.9


def test_an_unknown_dtype_and_a_scaled_granite_model_are_refused(tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer)
    with pytest.raises(ValueError, match="use float32, bfloat16, float16"):
        export_hf(checkpoint, tmp_path / "hf", dtype="int8")
    assert not (tmp_path / "hf").exists()
    granite = json.loads(
        (
            export_hf(random_checkpoint(tmp_path / "moe", MOE_SHARED, tokenizer), tmp_path / "g") / "config.json"
        ).read_text()
    )
    with pytest.raises(ValueError, match="embedding_multiplier scale"):
        model_config_of(granite | {"embedding_multiplier": 12.0})
    with pytest.raises(ValueError, match="Qwen2MoeForCausalLM model is not one tinylm runs"):
        model_config_of(granite | {"architectures": ["Qwen2MoeForCausalLM"]})


@pytest.mark.parametrize("shape", ["dense", "moe-shared"])
def test_a_context_past_the_trained_one_is_yarn_in_tinylm_and_in_the_export_with_the_same_logits(
    shape, tokenizer, tmp_path
):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", SHAPES[shape], tokenizer, spread=2.0)
    context = 4 * SHAPES[shape].max_seq_len
    exported = export_hf(checkpoint, tmp_path / "hf", context=context)
    scaling = json.loads((exported / "config.json").read_text())["rope_scaling"]
    assert scaling == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": SHAPES[shape].max_seq_len,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
    }
    stretched = load_model(str(checkpoint), context=context).model
    assert stretched.config.max_seq_len == context and stretched.config.trained_context == SHAPES[shape].max_seq_len
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    tokens = torch.randint(0, stretched.config.vocab_size, (1, context - 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = stretched(tokens).logits, theirs(tokens).logits
        plain = ours(checkpoint)(tokens[:, : SHAPES[shape].max_seq_len]).logits
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4), (got - expected).abs().max()
    assert not torch.allclose(expected[:, : plain.shape[1]], plain, atol=1e-3), "YaRN changed nothing"
    back, config = model_weights(locate_model(str(exported), None, tmp_path), None)
    assert (config.yarn_factor, config.trained_context, config.max_seq_len) == (4.0, SHAPES[shape].max_seq_len, context)


def test_a_context_within_the_trained_one_is_no_scaling_and_minimind_s_attention_factor_is_kept(tokenizer, tmp_path):
    assert DENSE.with_context(32) == dataclasses.replace(DENSE, max_seq_len=32)
    minimind = dataclasses.replace(DENSE, max_seq_len=256, yarn_factor=4.0, yarn_attention_factor=1.0)
    assert minimind.trained_context == 64 and minimind.with_context(512).yarn_factor == 8.0
    checkpoint = random_checkpoint(tmp_path / "checkpoint", minimind, tokenizer, spread=2.0)
    exported = export_hf(checkpoint, tmp_path / "hf")
    assert json.loads((exported / "config.json").read_text())["rope_scaling"]["attention_factor"] == 1.0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    tokens = torch.randint(0, 400, (1, 200), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(theirs(tokens).logits, ours(checkpoint)(tokens).logits, atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="rope scaling .*longrope.* is not one tinylm computes"):
        model_config_of(
            json.loads((exported / "config.json").read_text()) | {"rope_scaling": {"rope_type": "longrope"}}
        )


@pytest.mark.slow
def test_the_generate_command_reads_a_prompt_past_the_trained_context_with_yarn(tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer, spread=2.0)
    prompt = "We the People of the United States, in Order to form a more perfect Union, establish Justice " * 2
    stretched = load_model(str(checkpoint), context=256)
    assert len(stretched.tokenizer.encode(prompt).ids) > DENSE.max_seq_len
    command = [str(Path(sys.executable).parent / "tinylm"), "generate", "--checkpoint", str(checkpoint)]
    command += ["--prompt", prompt, "--max-new-tokens", "8", "--temperature", "0", "--workspace", str(tmp_path)]
    greedy = Sampling(temperature=0, repetition_penalty=1.1)
    for context, loaded in ((None, load_model(str(checkpoint))), (256, stretched)):
        flag = [] if context is None else ["--context", str(context)]
        done = subprocess.run([*command, *flag], capture_output=True, text=True, timeout=120, check=True)
        assert done.stdout.rstrip("\n") == generate_text(loaded, prompt, 8, greedy)
    refused = subprocess.run([*command, "--context", "0"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "a context of 0 tokens holds nothing" in refused.stderr
