"""What a tokenizer directory holds (special tokens, chat template, the files `transformers` reads) and how to load it.

Kept apart from training so that everything that only encodes or decodes (shards, chat
data, the trainer, generation, export) imports a few constants and `tokenizers`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tinylm.storage.manifest import Manifest, read_manifest

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
THINK_START = "<think>"
THINK_END = "</think>"
# Reasoning models write their thinking between these (MiniMind's reasoning stage, DeepSeek-R1, Qwen3).
THINK_TOKENS = (THINK_START, THINK_END)
# Tool calling in Qwen's layout: an assistant's call between <tool_call> tags, a tool's result between
# <tool_response> tags in a user turn. Tokenizers made before the response tokens existed encode them as text.
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_START, TOOL_RESPONSE_END = "<tool_response>", "</tool_response>"
TOOL_TOKENS = (TOOL_CALL_START, TOOL_CALL_END, TOOL_RESPONSE_START, TOOL_RESPONSE_END)
SPECIAL_TOKENS = [EOS, IM_START, IM_END, PAD, *THINK_TOKENS, *TOOL_TOKENS]
BYTE_ALPHABET_SIZE = 256
# What the system turn says when a conversation offers tools (Qwen2.5's words, so tools written for it fit).
TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_INSTRUCTION = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
# The chat template `transformers` renders; tokens/chat_template.py builds the same ids piece by piece (tested).
# The tool texts go in as Jinja string literals written as JSON strings (JSON's escapes are Jinja's too).
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- " + json.dumps(TOOLS_PREAMBLE) + " }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- " + json.dumps(TOOLS_INSTRUCTION) + " + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and tools and loop.first %}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message.get('reasoning_content') %}"
    "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- message['content'] or '' }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{%- set call = call['function'] if call['function'] is defined else call %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": ' + (call['name'] | tojson) + ', \"arguments\": ' }}"
    "{{- call['arguments'] if call['arguments'] is string else call['arguments'] | tojson }}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TOKENIZER_FILE = "tokenizer.json"


class TokenizerManifest(Manifest):
    """The tokenizer stage's manifest: the vocabulary, its special tokens' ids and the file's sha256 (what every
    tokenized output records, so data and checkpoints of another tokenizer are refused), and how training went."""

    vocab_size: int
    special_tokens: dict[str, int | None]
    tokenizer_sha256: str
    sample: dict[str, Any] = {}
    compression: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    train_seconds: float = 0.0
    config: dict[str, Any] = {}


def tokenizer_sha256_of(directory: str | Path) -> str:
    """The sha256 a finished tokenizer folder's manifest records: what its outputs are fingerprinted by."""
    manifest = read_manifest(directory, TokenizerManifest)
    if manifest is None:
        raise FileNotFoundError(f"{directory} has no manifest.json: not a finished tokenizer (`tinylm tokenizer`)")
    return manifest.tokenizer_sha256


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
