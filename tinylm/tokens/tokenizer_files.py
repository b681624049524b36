"""What a tokenizer directory holds (special tokens, chat template, the files `transformers` reads) and how to load it.

Kept apart from training so that everything that only encodes or decodes (shards, chat
data, the trainer, generation, export) imports a few constants and `tokenizers`.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
THINK_START = "<think>"
THINK_END = "</think>"
# Reasoning models write their thinking between these (MiniMind's reasoning stage, DeepSeek-R1, Qwen3).
THINK_TOKENS = (THINK_START, THINK_END)
# Reserved now so that tool-calling data can come later without a new vocabulary (Qwen's names).
TOOL_TOKENS = ("<tool_call>", "</tool_call>")
SPECIAL_TOKENS = [EOS, IM_START, IM_END, PAD, *THINK_TOKENS, *TOOL_TOKENS]
BYTE_ALPHABET_SIZE = 256
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message.get('reasoning_content') %}"
    "{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
    "{% endif %}"
    "{{ message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TOKENIZER_FILE = "tokenizer.json"


def hf_tokenizer_files(model_max_length: int = 32768) -> dict[str, dict]:
    special_map = {
        "eos_token": EOS,
        "pad_token": PAD,
        "additional_special_tokens": [IM_START, IM_END, *THINK_TOKENS, *TOOL_TOKENS],
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
        **special_map,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special_map}


def load_tokenizer(tokenizer_dir: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(Path(tokenizer_dir) / TOKENIZER_FILE))
