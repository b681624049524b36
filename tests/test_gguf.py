"""GGUF export, checked by llama.cpp itself: llama-cpp-python (built from its PyPI source) loads what tinylm wrote,
tokenizes as tinylm does, generates tinylm's greedy tokens, and renders the chat template into tinylm's prompt."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import llama_cpp  # the dev extra builds it: a missing build fails here rather than skipping
import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from tokenizers import Tokenizer, pre_tokenizers

from tests.helpers import tiny_train_config
from tests.test_export import DENSE, MOE_ROUTED, MOE_SHARED, random_checkpoint
from tinylm.config import TokenizerConfig
from tinylm.export.gguf import MODELFILE, export_gguf, gguf_name
from tinylm.export.llama_cpp import SOURCE_VARIABLE, converter_source
from tinylm.inference.generate import load_model
from tinylm.model.generation import Sampling, stream_tokens
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import IM_END, TOKENIZER_FILE
from tinylm.training.trainer import train_model

pytestmark = pytest.mark.slow
GREEDY = Sampling(temperature=0.0)
PROMPTS = [
    "We the People of the United States",
    "美利坚合众国宪法",
    "第一条 所有立法权",
    "Congress shall make no law respecting",
    "  two spaces, 3 numbers: 1787.\n\nA new line",
    "众议院由各州人民每两年选举产生的议员组成",
]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def tokenizer(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(small_corpus, directory, TokenizerConfig(vocab_size=400))
    return directory


def llama(path: Path, context: int = 64) -> llama_cpp.Llama:
    return llama_cpp.Llama(str(path), n_ctx=context, n_threads=2, verbose=False, seed=0)


def greedy_in_llama_cpp(model: llama_cpp.Llama, prompt_ids: list[int]) -> list[int]:
    found = []
    for token in model.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
        found.append(token)
        if len(found) == NEW_TOKENS:
            break
    model.reset()
    return found


def top_two_margin(checkpoint: Path, prompt_ids: list[int], ours: list[int], theirs: list[int]) -> float:
    """How far apart tinylm's two best logits are where its greedy tokens and another run's first part."""
    step = next(index for index, (a, b) in enumerate(zip(ours, theirs)) if a != b)
    with torch.no_grad():
        output = load_model(str(checkpoint)).model(torch.tensor([prompt_ids + ours[:step]]))
    logits = (output[0] if isinstance(output, tuple) else output)[0, -1].float()
    best, second = torch.topk(logits, 2).values.tolist()
    return best - second


def greedy_in_tinylm(checkpoint: Path, prompt_ids: list[int]) -> list[int]:
    return list(stream_tokens(load_model(str(checkpoint)).model, prompt_ids, NEW_TOKENS, GREEDY))


@pytest.mark.parametrize("shape", ["dense", "moe-shared", "moe-routed"])
def test_llama_cpp_tokenizes_as_tinylm_and_generates_its_greedy_tokens_from_an_f32_gguf(shape, tokenizer, tmp_path):
    config = {"dense": DENSE, "moe-shared": MOE_SHARED, "moe-routed": MOE_ROUTED}[shape]
    checkpoint = random_checkpoint(tmp_path / "checkpoint", config, tokenizer)
    exported = export_gguf(checkpoint, tmp_path / "gguf", quant="f32")
    model = llama(exported / gguf_name("f32"))
    ours = Tokenizer.from_file(str(tokenizer / TOKENIZER_FILE))
    for prompt in PROMPTS:
        ids = ours.encode(prompt).ids
        assert model.tokenize(prompt.encode(), add_bos=False, special=False) == ids, prompt
        assert model.detokenize(ids).decode() == prompt
        assert greedy_in_llama_cpp(model, ids) == greedy_in_tinylm(checkpoint, ids), prompt


def test_f16_generates_the_same_tokens_q8_0_nearly_and_q4_k_m_loads_smaller(tokenizer, tmp_path):
    """Weights spread 4x training's initialisation: logits decisive enough for an argmax, dynamics calm enough
    that one rounding does not send a continuation elsewhere (at 8x, f32 still agrees and q8_0 drifts)."""
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer, seed=3, spread=4.0)
    ours = Tokenizer.from_file(str(tokenizer / TOKENIZER_FILE))
    expected = {prompt: greedy_in_tinylm(checkpoint, ours.encode(prompt).ids) for prompt in PROMPTS}
    same, sizes, f16_margins = {}, {}, []
    for quant in ("f16", "q8_0", "q4_k_m"):
        path = export_gguf(checkpoint, tmp_path / quant, quant=quant) / gguf_name(quant)
        sizes[quant] = path.stat().st_size
        model = llama(path)
        same[quant] = 0
        for prompt in PROMPTS:
            ids, found = ours.encode(prompt).ids, greedy_in_llama_cpp(model, ours.encode(prompt).ids)
            same[quant] += found == expected[prompt]
            if quant == "f16" and found != expected[prompt]:
                f16_margins.append(top_two_margin(checkpoint, ids, expected[prompt], found))
    print(f"prompts of {len(PROMPTS)} whose {NEW_TOKENS} greedy tokens equal tinylm's: {same}; bytes {sizes}")
    # f16 rounds each weight to 11 significant bits: it may only part from tinylm where tinylm's two best logits
    # are a near tie (one prompt's first token here: 1.70507 against 1.70452), never on a decided argmax.
    assert all(margin < 0.01 for margin in f16_margins), f16_margins
    assert same["q8_0"] >= len(PROMPTS) - 1
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"]


def test_llama_cpp_renders_the_gguf_chat_template_into_tinylms_prompt(tokenizer, tmp_path):
    config = dataclasses.replace(DENSE, max_seq_len=256)
    checkpoint = random_checkpoint(tmp_path / "checkpoint", config, tokenizer, seed=5)
    exported = export_gguf(checkpoint, tmp_path / "gguf", quant="f32")
    model = llama(exported / gguf_name("f32"), context=config.max_seq_len)
    template = model.metadata["tokenizer.chat_template"]
    loaded = load_model(str(checkpoint))
    conversation = [
        {"role": "system", "content": "你是一个有用的助手。"},
        {"role": "user", "content": "宪法第一条说什么？"},
        {"role": "assistant", "content": "All legislative Powers"},
        {"role": "user", "content": "And the second?"},
    ]
    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(template, eos_token=IM_END, bos_token="")
    prompt = formatter(messages=conversation).prompt
    (expected,) = loaded.chat.encode([conversation], generation_prompt=True)
    assert model.tokenize(prompt.encode(), add_bos=False, special=True) == expected.ids
    # What the chat completion itself encoded (its prompt is the template rendered and tokenized by llama.cpp).
    reply = model.create_chat_completion(conversation, max_tokens=4, temperature=0.0, repeat_penalty=1.0)
    assert reply["usage"]["prompt_tokens"] == len(expected.ids)


def test_the_modelfile_points_at_the_gguf_with_chatml_stops_and_the_trained_context(tokenizer, tmp_path):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer)
    exported = export_gguf(checkpoint, tmp_path / "gguf", quant="f16")
    lines = (exported / MODELFILE).read_text().splitlines()
    assert lines[0] == f"FROM ./{gguf_name('f16')}"
    assert 'PARAMETER stop "<|im_end|>"' in lines and f"PARAMETER num_ctx {DENSE.max_seq_len}" in lines
    assert sorted(path.name for path in exported.iterdir()) == sorted([MODELFILE, gguf_name("f16")])


def test_what_llama_cpp_would_tokenize_differently_is_refused_and_nothing_is_written(tokenizer, tmp_path, monkeypatch):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer)
    spaced = Tokenizer.from_file(str(checkpoint / TOKENIZER_FILE))
    spaced.pre_tokenizer = pre_tokenizers.Metaspace()
    spaced.save(str(checkpoint / TOKENIZER_FILE))
    with pytest.raises(ValueError, match="not GPT-2's byte-level regex"):
        export_gguf(checkpoint, tmp_path / "gguf")
    assert not (tmp_path / "gguf").exists()
    with pytest.raises(ValueError, match="use f32, f16, bf16, q8_0"):
        export_gguf(checkpoint, tmp_path / "gguf", quant="q3")
    monkeypatch.setenv(SOURCE_VARIABLE, str(tmp_path))
    (checkpoint / TOKENIZER_FILE).write_text(json.dumps(json.loads((tokenizer / TOKENIZER_FILE).read_text())))
    with pytest.raises(FileNotFoundError, match=f"{SOURCE_VARIABLE}=.* is not a llama.cpp checkout"):
        export_gguf(checkpoint, tmp_path / "gguf")


def test_the_export_command_writes_and_registers_a_gguf_that_tinylm_itself_refuses_to_load(
    shards_dir, workspace, tmp_path
):
    result = train_model(shards_dir, workspace, tiny_train_config(max_shards=1))
    tinylm = str(Path(sys.executable).parent / "tinylm")
    environment = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    export = [tinylm, "export", "--checkpoint", result["run_id"], "--workspace", str(workspace)]
    command = [*export, "--output", str(tmp_path / "gguf"), "--format", "gguf", "--quant", "q4_k_m"]
    done = subprocess.run(
        [*command, "--register", "tiny-gguf"], capture_output=True, text=True, env=environment, timeout=300, check=True
    )
    printed = json.loads(done.stdout)
    assert printed["registered"] == {"name": "tiny-gguf", "version": 1}
    assert llama(Path(printed["gguf"])).n_vocab() == load_model(result["run_id"]).tokenizer.get_vocab_size()
    (version,) = MlflowClient().search_model_versions("name = 'tiny-gguf'")
    assert version.tags["format"] == "gguf" and version.source.endswith("/gguf")
    logged = {Path(item.path).name for item in MlflowClient().list_artifacts(result["run_id"], "gguf")}
    assert logged == {gguf_name("q4_k_m"), MODELFILE}
    with pytest.raises(ValueError, match="models:/tiny-gguf/1 is not a Hugging Face folder"):
        load_model("models:/tiny-gguf/1")
    wrong = subprocess.run(
        [*command[:-6], "--output", str(tmp_path / "hf"), "--quant", "q8_0"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert wrong.returncode != 0 and "--quant is for --format gguf" in wrong.stderr
    assert not (tmp_path / "hf").exists()


def test_llama_cpp_reads_the_yarn_context_of_an_export_and_generates_tinylms_tokens_past_the_trained_length(
    tokenizer, tmp_path
):
    checkpoint = random_checkpoint(tmp_path / "checkpoint", DENSE, tokenizer, seed=7, spread=2.0)
    context = 4 * DENSE.max_seq_len
    exported = export_gguf(checkpoint, tmp_path / "gguf", quant="f32", context=context)
    model = llama(exported / gguf_name("f32"), context=context)
    assert model.metadata["llama.rope.scaling.type"] == "yarn" and model.metadata["llama.context_length"] == str(
        context
    )
    assert f"PARAMETER num_ctx {context}" in (exported / MODELFILE).read_text()
    ours = Tokenizer.from_file(str(tokenizer / TOKENIZER_FILE))
    prompt = ours.encode(" ".join(PROMPTS * 4)).ids[: context - NEW_TOKENS - 4]
    assert len(prompt) > 2 * DENSE.max_seq_len
    stretched = load_model(str(checkpoint), context=context).model
    assert greedy_in_llama_cpp(model, prompt) == list(stream_tokens(stretched, prompt, NEW_TOKENS, GREEDY))


def test_the_converter_is_unpacked_once_from_the_installed_llama_cpp_python_source(tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_VARIABLE, raising=False)
    tree = converter_source(tmp_path)
    assert tree.name == f"llama.cpp-{llama_cpp.__version__}"
    assert (tree / "conversion" / "llama.py").is_file() and (tree / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert sum(path.stat().st_size for path in tree.rglob("*") if path.is_file()) < 10_000_000, "the converter only"
    stamp = (tree / "conversion").stat().st_mtime_ns
    assert converter_source(tmp_path) == tree and (tree / "conversion").stat().st_mtime_ns == stamp
