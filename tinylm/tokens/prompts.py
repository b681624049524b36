"""GRPO's prompts: a JSON Lines file (or JSON array) of questions to token ids, with the fields its rewards read.

A record holds `prompt` (text, or a list of messages as TRL's conversational datasets
have it) or `messages`, an optional `system` text, and any other fields (`answer`, say)
that go to the reward functions unchanged. Each prompt is encoded with the chat
template's generation prompt, and with `think` the assistant's turn opens with `<think>`
so the model reasons before it answers. Records that cannot be prompts are skipped and
counted by reason with their line; a file most of whose records are skipped fails.

The output is a directory named by its fingerprint, written last: the records, the
tokenizer they were encoded with (a checkpoint carries it on), and a manifest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.corpus.readers.jsonl import read_json_records
from tinylm.stats import Stats
from tinylm.storage.atomic import atomic_path, atomic_write_text
from tinylm.storage.layout import stage_dir
from tinylm.storage.manifest import TokenizedManifest, file_sha256, fingerprint, finished_output, write_manifest
from tinylm.tokens.chat_data import check_skipped_share
from tinylm.tokens.chat_template import ChatEncoder, Message, message_problem
from tinylm.tokens.tokenizer_files import EOS, IM_END, PAD, THINK_START, TOKENIZER_FILE, load_tokenizer

PROMPTS_FILE = "prompts.jsonl"


class PromptsManifest(TokenizedManifest):
    """GRPO's encoded prompts: the file they came from, the ids generation stops and pads with, the settings they
    were read with, and the counts of what was kept and skipped."""

    format: str = "prompts"
    input: str
    im_end_id: int | None = None
    pad_id: int | None = None
    settings: dict[str, Any] = {}
    stats: dict[str, Any] = {}


PROMPT_KEYS = ("prompt", "messages", "system")


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are read: from `prompt_field` (None: `prompt`, else `messages`); the reference answer from
    `answer_field` (None: `answer`, else `solution`), kept as `answer`; `think` opens the assistant's turn with
    `<think>`; a prompt longer than `max_prompt_tokens`, or lacking one of `required_fields` (what the rewards
    read), is skipped, counted."""

    prompt_field: str | None
    answer_field: str | None
    think: bool
    max_prompt_tokens: int
    required_fields: tuple[str, ...]
    max_skipped_share: float


def prompts_fingerprint(path: Path, tokenizer_sha256: str, settings: PromptSettings) -> str:
    shaping = dataclasses.asdict(settings) | {"max_skipped_share": None}  # a limit, not a shape of the output
    return fingerprint("prompts", shaping, {"prompts": file_sha256(path), "tokenizer": tokenizer_sha256})


def encoded_prompts(
    path: str | Path, tokenizer_dir: str | Path, workspace: str | Path, settings: PromptSettings
) -> Path:
    """The directory of `path`'s prompts encoded for this tokenizer in the workspace: a finished one is reused,
    anything else (a killed run's leftovers too) written anew."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompts file")
    expected = prompts_fingerprint(path, file_sha256(Path(tokenizer_dir) / TOKENIZER_FILE), settings)
    output = stage_dir(workspace, "prompts", f"{path.stem}-{expected[:12]}")
    if finished_output(output, expected) is None:
        prepare_prompts(path, tokenizer_dir, output, settings)
    return output


ANSWER_FIELDS = ("answer", "solution")  # where the field's math sets keep the reference: GSM8K, MATH; TRL's


def answer_of(record: dict, field: str | None) -> Any:
    """The record's reference answer: `field`, else its `answer`, else its `solution`; None when it has no
    non-empty one."""
    found = record.get(field) if field else next((record[name] for name in ANSWER_FIELDS if name in record), None)
    return None if found is None or (isinstance(found, str) and not found.strip()) else found


def prompt_of(record: dict, field: str | None) -> Any:
    return record.get(field) if field else record.get("prompt", record.get("messages"))


def conversation_of(record: Any, field: str | None) -> list[Message] | str:
    """The turns a record asks the model to continue, or why it cannot (a skip reason)."""
    if not isinstance(record, dict):
        return "not_an_object"
    prompt = prompt_of(record, field)
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt:
        messages = prompt
    else:
        return "no_prompt_or_messages"
    problem = next(filter(None, map(message_problem, messages)), None)
    if problem is not None:
        return problem
    if messages[-1]["role"] == "assistant":
        return "last_turn_is_assistant"
    system = record.get("system")
    if isinstance(system, str) and system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def prepare_prompts(
    path: str | Path, tokenizer_dir: str | Path, output_dir: str | Path, settings: PromptSettings
) -> PromptsManifest:
    """Encode the prompts of `path` into `output_dir`; the manifest.

    A record lacking a field a reward needs is skipped as `missing_<field>`; one whose prompt
    is longer than `max_prompt_tokens` as `prompt_too_long` (cutting it would drop the question).
    """
    path, output_dir = Path(path), Path(output_dir)
    tokenizer_sha256 = file_sha256(Path(tokenizer_dir) / TOKENIZER_FILE)
    tokenizer = load_tokenizer(tokenizer_dir)
    encoder = ChatEncoder(tokenizer)
    opening = [tokenizer.token_to_id(THINK_START)] if settings.think else []
    if None in opening:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no {THINK_START} token, so think cannot be on")
    stats = Stats("records", "prompts", "prompt_tokens", "longest_prompt", groups=("skipped",))
    kept: list[dict] = []
    for line, record in read_json_records(path, stats):
        conversation = conversation_of(record, settings.prompt_field)
        if isinstance(conversation, str):
            stats.skip(conversation, line)
            continue
        record = (
            {**record, "answer": answer_of(record, settings.answer_field)}
            if "answer" in settings.required_fields
            else record
        )
        missing = [field for field in settings.required_fields if record.get(field) is None]
        if missing:
            stats.skip(f"missing_{missing[0]}", line)
            continue
        (encoded,) = encoder.encode([conversation], generation_prompt=True)
        ids = encoded.ids + opening
        if len(ids) > settings.max_prompt_tokens:
            stats.skip("prompt_too_long", line)
            continue
        fields = {key: value for key, value in record.items() if key not in (*PROMPT_KEYS, settings.prompt_field)}
        kept.append({**fields, "line": line, "prompt": prompt_of(record, settings.prompt_field), "ids": ids})
        stats.update("prompts")
        stats.update("prompt_tokens", len(ids))
        stats.counts["longest_prompt"] = max(stats["longest_prompt"], len(ids))
    check_skipped_share(path, stats, settings.max_skipped_share)
    if not kept:
        raise ValueError(f"{path}: no usable prompts: skipped {stats.group('skipped')}")
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / PROMPTS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    with atomic_path(output_dir / TOKENIZER_FILE) as tmp:
        shutil.copyfile(Path(tokenizer_dir) / TOKENIZER_FILE, tmp)
    manifest = PromptsManifest(
        stage="prompts",
        fingerprint=prompts_fingerprint(path, tokenizer_sha256, settings),
        input=str(path.resolve()),
        tokenizer_sha256=tokenizer_sha256,
        tokenizer_dir=str(output_dir.resolve()),
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=tokenizer.token_to_id(EOS),
        im_end_id=tokenizer.token_to_id(IM_END),
        pad_id=tokenizer.token_to_id(PAD),
        settings=dataclasses.asdict(settings),
        stats=stats.as_dict(),
    )
    return write_manifest(output_dir, manifest)


def read_prompts(directory: str | Path) -> list[dict]:
    with open(Path(directory) / PROMPTS_FILE, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]
