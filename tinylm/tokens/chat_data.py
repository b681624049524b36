"""Chat data stage: SFT conversations or DPO pairs in jsonl to memory-mappable token arrays for fine-tuning.

One part per input file, streamed (see `chat_arrays` for the layout): each unit's token
ids and loss mask, the input line it came from, and its split. Records that are not
conversations are skipped and counted by reason; ones longer than `max_seq_len` are cut,
and dropped (counted) only if no assistant token survives. When every part is written,
the training units of all files are mixed by `source_weights` into one shuffled order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.config import ChatDataConfig, ChatFileConfig
from tinylm.corpus.convert import make_converter, simplified
from tinylm.corpus.readers.jsonl import read_json_records
from tinylm.stats import Stats
from tinylm.storage.atomic import atomic_path, discard
from tinylm.storage.manifest import content_hashes, fingerprint, write_manifest
from tinylm.tokens.chat_arrays import (
    ORDER_FILE,
    SEQUENCES_PER_UNIT,
    SPLIT,
    VALIDATION_FILE,
    ChatDataManifest,
    ChatPartWriter,
    is_validation,
    mixed_order,
    part_dir,
    validation_units,
    write_array,
)
from tinylm.tokens.chat_template import ChatEncoder, Message, conversation_problem, pair_problem
from tinylm.tokens.layouts.detect import READERS, NotChatData, detect
from tinylm.tokens.layouts.messages import Skipped
from tinylm.tokens.shard_files import token_dtype
from tinylm.tokens.tokenizer_files import EOS, PAD, load_tokenizer, tokenizer_sha256_of

Unit = list[list[Message]]  # what one training row holds: a conversation (sft), or chosen and rejected (dpo)
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
RANKING_LAYOUTS = ("ranked", "ultrafeedback")  # layouts that give several pairs per prompt, as ranked_pairs says


class FileLayout:
    """How the records of one file are read: its layout, fixed by its settings or told from its first record that
    names one, and its fields renamed to the layout's."""

    def __init__(self, path: Path, config: ChatDataConfig) -> None:
        settings = config.files.get(path.name, ChatFileConfig())
        self.kind, self.path, self.config = config.format, path, config
        self.renames = {found: canonical for canonical, found in settings.fields.items()}
        self.layout = None if settings.layout == "auto" else settings.layout
        if self.layout is not None and self.layout not in READERS[self.kind]:
            raise ValueError(
                f"{path}: layout {self.layout} is not one of {config.format}'s: {sorted(READERS[self.kind])}"
            )

    def read(self, record: Any, line: int, stats: Stats) -> tuple[list[Unit], list[dict]] | None:
        """The record's units (one conversation for sft; chosen and rejected for dpo, once or for each ranked
        pair) and the tools it offers, or None (counted with its line) when it has none usable."""
        if not isinstance(record, dict):
            stats.skip("record_not_an_object", line)
            return None
        record = {self.renames.get(key, key): value for key, value in record.items()}
        if self.layout is None and not self._detect(record):
            stats.skip("no_known_layout", line)
            return None
        reader = READERS[self.kind][self.layout]
        if self.layout in RANKING_LAYOUTS:
            reader = functools.partial(reader, pairs=self.config.ranked_pairs)
        try:
            found, tools = reader(record)
        except KeyError as missing:
            stats.skip(f"no_{missing.args[0]}_field", line)
            return None
        except Skipped as skipped:
            stats.skip(str(skipped), line)
            return None
        return ([list(pair) for pair in found] if self.kind == "dpo" else [[found]]), tools

    def _detect(self, record: Any) -> bool:
        try:
            detected = detect(record)
        except NotChatData as refused:
            raise ValueError(f"{self.path} {refused}") from None
        if detected is None:
            return False
        kind, layout = detected
        if kind != self.kind:
            what = "preference pairs" if kind == "dpo" else "SFT conversations"
            raise ValueError(
                f"{self.path} holds {what} ({layout} layout): give it to chat-data --format {kind}, or set its "
                f"layout in the files setting if it is not {layout}"
            )
        self.layout = layout
        return True


def _filled(messages: list[Message], values: dict[str, str], stats: Stats) -> list[Message]:
    """The messages with their `{{name}}` placeholders given values (the placeholders setting); each placeholder
    left as written is counted as `unfilled_placeholders.<name>`, so a model trained on `{{name}}` is not a
    surprise."""
    filled = []
    for message in messages:
        content = message["content"]
        for name in _PLACEHOLDER.findall(content):
            if name not in values:
                stats.update(f"unfilled_placeholders.{name}")
        if values:
            content = _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), content)
        filled.append(message if content == message["content"] else message | {"content": content})
    return filled


def _conversations(
    layout: FileLayout, record: Any, line: int, config: ChatDataConfig, stats: Stats
) -> tuple[list[Unit], list[dict]] | None:
    """The record's usable units in tinylm's form and the tools they offer, or None when it has none; each unusable
    one is counted with its line."""
    read = layout.read(record, line, stats)
    if read is None:
        return None
    units, tools = read
    usable = []
    for unit in units:
        unit = [_filled(messages, config.placeholders, stats) for messages in unit]
        problem = next(filter(None, map(conversation_problem, unit)), None)
        if problem is None and config.format == "dpo":
            problem = pair_problem(*unit, config.dpo_turns)
        if problem is not None:
            stats.skip(problem, line)
            continue
        usable.append(unit)
    if not usable:
        return None
    stats.update("with_tools", int(bool(tools)))
    return usable, tools


def _simplified(messages: list[Message], convert: Callable[[str], str], stats: Stats) -> list[Message]:
    """The messages with their Han characters simplified, as the corpus stage simplifies documents (the
    tokenizer learned simplified text); messages changed are counted as `converted_messages`."""
    converted = [
        message
        | {
            field: simplified(message[field], convert)
            for field in ("content", "reasoning_content")
            if message.get(field)
        }
        for message in messages
    ]
    stats.update("converted_messages", sum(new != old for new, old in zip(converted, messages)))
    return converted


def _batches(
    layout: FileLayout, config: ChatDataConfig, stats: Stats
) -> Iterator[tuple[list[int], list[list[Message]], list[list[dict]]]]:
    """(lines, conversations, the tools each offers) in batches of `batch_records` records."""
    lines: list[int] = []
    conversations: list[list[Message]] = []
    offered: list[list[dict]] = []
    convert = make_converter(config.convert) if config.simplify else None
    for number, record in read_json_records(layout.path, stats):
        found = _conversations(layout, record, number, config, stats)
        if found is None:
            continue
        units, tools = found
        for unit in units:
            lines.append(number)
            conversations += [_simplified(side, convert, stats) for side in unit] if convert is not None else unit
            offered += [tools] * len(unit)
        if len(lines) >= config.batch_records:
            yield lines, conversations, offered
            lines, conversations, offered = [], [], []
    if lines:
        yield lines, conversations, offered


def encode_chat_file(
    path: str | Path,
    index: int,
    tokenizer_dir: str | Path,
    tokenizer_sha256: str,
    output_dir: str | Path,
    config: ChatDataConfig,
) -> dict:
    """Tokenize one jsonl file into part `index` (a directory, written whole or not at all); returns its counts."""
    encoder = ChatEncoder.load(Path(tokenizer_dir), tokenizer_sha256)
    counters = (
        "records",
        "rows",
        "validation_rows",
        "truncated",
        "tokens",
        "trained_tokens",
        "converted_messages",
        "with_tools",
    )
    stats = Stats(*counters, groups=("skipped",))
    width = SEQUENCES_PER_UNIT[config.format]
    output = Path(output_dir) / part_dir(index)
    dtype = token_dtype(encoder.text_tokenizer.get_vocab_size())
    name = Path(path).name
    layout = FileLayout(Path(path), config)
    with atomic_path(output) as tmp, ChatPartWriter(tmp, dtype) as writer:
        for lines, conversations, offered in _batches(layout, config, stats):
            last_only = config.format == "dpo" and config.dpo_turns == "last"
            encoded = encoder.encode(conversations, last_reply_only=last_only, tools=offered)
            for position, line in enumerate(lines):
                whole = encoded[position * width : (position + 1) * width]
                stats.update("truncated", int(any(len(tokens.ids) > config.max_seq_len for tokens in whole)))
                group = [tokens.truncated(config.max_seq_len) for tokens in whole]
                if any(tokens.trained == 0 for tokens in group):
                    stats.skip("no_assistant_token_within_max_seq_len", line)
                    continue
                validation = is_validation(name, line, config.seed, config.validation_fraction)
                writer.add([(tokens.ids, tokens.mask) for tokens in group], line, validation)
                stats.update("rows", 1)
                stats.update("validation_rows", int(validation))
                stats.update("tokens", sum(len(tokens.ids) for tokens in group))
                stats.update("trained_tokens", sum(tokens.trained for tokens in group))
        check_skipped_share(Path(path), stats, config.max_skipped_share)
    return {"input": str(path), "file": output.name, "layout": layout.layout, **stats.as_dict()}


def check_skipped_share(path: Path, stats: Stats, limit: float) -> None:
    """Fail on a file most of whose records were skipped (most likely a layout or field tinylm misread, or the
    wrong file): training on the few left would be a green run that learned nothing the user meant."""
    records, skipped = stats.counts.get("records", 0), stats.group("skipped")
    total = sum(skipped.values())
    if records and total / records > limit:
        reason = max(skipped, key=skipped.get)
        where = ", ".join(map(str, stats.first_skipped.get(reason, [])))
        raise ValueError(
            f"{path}: {total} of {records} records skipped, {skipped[reason]} as {reason} (first at {where}); "
            f"{_REMEDIES.get(reason, _LAYOUT_REMEDY.format(name=path.name))}, or raise max_skipped_share"
        )


_LAYOUT_REMEDY = (
    "name the file's layout and the fields it renames in the files setting, e.g. files: {{{name}: {{layout: alpaca, "
    "fields: {{instruction: q, output: a}}}}}} (docs/tokens.md lists the layouts)"
)
# What to change for the skip reasons whose cause is a setting, not the file's layout.
_REMEDIES = {
    "no_assistant_token_within_max_seq_len": "raise max_seq_len (a system turn with tools takes room too)",
    "empty_reply": "give the empty assistant turns their replies or drop those records (trained, an empty reply "
    "teaches the model to answer with nothing)",
    "moss_plugin_commands": "tinylm reads MOSS's conversations without plugins; leave the plugin files out",
    "prompts_differ": "set dpo_turns: all to score whole conversations, MiniMind's way",
    "prompt_too_long": "raise max_prompt_tokens (the chat template's tokens count too)",
    "no_prompt_or_messages": "name the field that holds each prompt with prompt_field",
    "missing_answer": "name the field holding each reference answer with answer_field (answer and solution are "
    "read by default)",
}


def chat_data_inputs(inputs: list[str], tokenizer_dir: str | Path, config: ChatDataConfig) -> tuple[str, str]:
    """The fingerprint a finished run over these inputs carries, and the tokenizer's sha256."""
    tokenizer_sha256 = tokenizer_sha256_of(tokenizer_dir)
    inputs_hashes = {**content_hashes(inputs), "tokenizer": tokenizer_sha256}
    return fingerprint("chat_data", config.computing(), inputs_hashes), tokenizer_sha256


def finish_chat_data(
    output_dir: str | Path,
    expected: str,
    tokenizer_dir: str | Path,
    tokenizer_sha256: str,
    config: ChatDataConfig,
    results: list[dict],
) -> ChatDataManifest:
    """Check that something was kept, drop parts of an earlier run that no input made (and a killed run's
    half-written ones), mix the files into the training order, write the manifest."""
    output_dir = Path(output_dir)
    total = Stats.total(results)
    if not total["rows"]:
        raise ValueError(
            f"no usable {config.format} records in {[r['input'] for r in results]}: skipped {total.group('skipped')}"
        )
    made = {result["file"] for result in results}
    for stale in output_dir.glob("part-*"):
        if stale.name not in made:
            discard(stale)
    for leftover in output_dir.glob(".part-*.tmp-*"):  # what a killed run was writing when it died
        discard(leftover)
    splits = [np.fromfile(output_dir / result["file"] / SPLIT, dtype="u1") for result in results]
    names = [Path(result["input"]).name for result in results]
    order = mixed_order(splits, names, config.source_weights, config.seed)
    if not len(order):
        raise ValueError(
            f"every usable record of {names} went to validation or has weight 0: lower validation_fraction"
        )
    write_array(output_dir / ORDER_FILE, order)
    write_array(output_dir / VALIDATION_FILE, validation_units(splits))
    tokenizer = load_tokenizer(tokenizer_dir)
    manifest = ChatDataManifest(
        stage="chat_data",
        format=config.format,
        # Which tokens the loss is on: every assistant turn (SFT, MiniMind's DPO), or only a pair's final reply.
        scored_turns="final_reply" if config.format == "dpo" and config.dpo_turns == "last" else "assistant_turns",
        fingerprint=expected,
        tokenizer_sha256=tokenizer_sha256,
        tokenizer_dir=str(Path(tokenizer_dir).resolve()),
        vocab_size=tokenizer.get_vocab_size(),
        dtype=token_dtype(tokenizer.get_vocab_size()).str,
        sequences_per_unit=SEQUENCES_PER_UNIT[config.format],
        train_units=len(order),
        eos_id=tokenizer.token_to_id(EOS),
        pad_id=tokenizer.token_to_id(PAD),
        parts=results,
        stats=total.as_dict(),
        config=config.model_dump(mode="json"),
    )
    return write_manifest(output_dir, manifest)
