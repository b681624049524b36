"""Tokenizer stage: byte-level BPE with HF `tokenizers`, exported for `transformers` too.

Byte-level means every Unicode string (rare CJK extensions and emoji included) encodes
without an unknown token and decodes back to exactly itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tinylm.config import TokenizerConfig
from tinylm.storage.atomic import atomic_path, atomic_write_json
from tinylm.storage.documents import corpus_parts, iter_texts
from tinylm.storage.manifest import file_sha256, fingerprint, is_complete, manifest_hash, read_manifest, write_manifest

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, IM_START, IM_END, PAD]
BYTE_ALPHABET_SIZE = 256
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TOKENIZER_FILE = "tokenizer.json"


def sample_texts(corpus_dir: str | Path, max_bytes: int) -> Iterator[str]:
    """Texts of the corpus in order until `max_bytes` of UTF-8 are reached: the memory budget of training."""
    budget = max_bytes
    for text in iter_texts(corpus_parts(corpus_dir)):
        size = len(text.encode("utf-8"))
        if size > budget:
            return
        budget -= size
        yield text


def new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _hf_files(model_max_length: int = 32768) -> dict[str, dict]:
    special_map = {"eos_token": EOS, "pad_token": PAD, "additional_special_tokens": [IM_START, IM_END]}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        **special_map,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special_map}


def train_tokenizer(corpus_dir: str | Path, output_dir: str | Path, config: TokenizerConfig) -> dict:
    """Train on a bounded sample of the corpus and write a directory both HF libraries load."""
    minimum = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if config.vocab_size < minimum:
        raise ValueError(
            f"vocab_size {config.vocab_size} is too small: the byte alphabet and special tokens alone need {minimum}"
        )
    output_dir = Path(output_dir)
    expected = fingerprint("tokenizer", config, {"corpus": manifest_hash(corpus_dir)})
    if is_complete(output_dir, expected):
        return read_manifest(output_dir) | {"reused": True}
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sampled = {"documents": 0, "bytes": 0}

    def counted(texts: Iterator[str]) -> Iterator[str]:
        for text in texts:
            sampled["documents"] += 1
            sampled["bytes"] += len(text.encode("utf-8"))
            yield text

    tokenizer.train_from_iterator(counted(sample_texts(corpus_dir, config.max_text_bytes)), trainer=trainer)
    if sampled["documents"] == 0:
        raise ValueError(f"corpus {corpus_dir} has no documents to train a tokenizer on")
    with atomic_path(output_dir / TOKENIZER_FILE) as tmp:
        tokenizer.save(str(tmp))
    for name, content in _hf_files().items():
        atomic_write_json(output_dir / name, content)
    manifest = {
        "stage": "tokenizer",
        "fingerprint": expected,
        "vocab_size": tokenizer.get_vocab_size(),
        "special_tokens": {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS},
        "tokenizer_sha256": file_sha256(output_dir / TOKENIZER_FILE),
        "sample": sampled,
        "config": config.model_dump(),
    }
    write_manifest(output_dir, manifest)
    return manifest | {"reused": False}


def load_tokenizer(tokenizer_dir: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(Path(tokenizer_dir) / TOKENIZER_FILE))


train_tokenizer_task = task(train_tokenizer, name="train-tokenizer", cache_policy=NO_CACHE)
