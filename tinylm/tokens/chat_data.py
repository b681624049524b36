"""Chat data stage: SFT conversations or DPO pairs in jsonl to token parquet for fine-tuning.

One parquet part per input file, streamed in row groups: `input_ids` and `loss_mask`
per conversation (for DPO, `chosen_*` and `rejected_*`), plus the input line it came
from. Records that are not conversations are skipped and counted by reason; ones longer
than `max_seq_len` are cut, and dropped (counted) only if no assistant token survives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tinylm.config import ChatDataConfig
from tinylm.corpus.convert import make_converter, simplified
from tinylm.corpus.readers.jsonl import read_json_lines
from tinylm.stats import Stats
from tinylm.storage.atomic import atomic_path
from tinylm.storage.manifest import content_hashes, fingerprint, read_manifest, write_manifest
from tinylm.tokens.chat_template import ChatEncoder, ChatTokens, Message, conversation_problem, pair_problem
from tinylm.tokens.tokenizer_files import EOS, PAD, load_tokenizer

_IDS = pa.list_(pa.int32())
_MASK = pa.list_(pa.int8())
SCHEMAS = {
    "sft": pa.schema([("input_ids", _IDS), ("loss_mask", _MASK), ("line", pa.int64())]),
    "dpo": pa.schema(
        [
            ("chosen_input_ids", _IDS),
            ("chosen_loss_mask", _MASK),
            ("rejected_input_ids", _IDS),
            ("rejected_loss_mask", _MASK),
            ("line", pa.int64()),
        ]
    ),
}
FIELDS = {"sft": ("conversations",), "dpo": ("chosen", "rejected")}


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _conversations(record: Any, fmt: str, stats: Stats) -> list[list[Message]] | None:
    """The record's conversations in the format's field order, or None (counted) when it has none usable."""
    if not isinstance(record, dict) or any(name not in record for name in FIELDS[fmt]):
        stats.skip(f"no_{'_'.join(FIELDS[fmt])}_field")
        return None
    conversations = [record[name] for name in FIELDS[fmt]]
    for messages in conversations:
        if (problem := conversation_problem(messages)) is not None:
            stats.skip(problem)
            return None
    if fmt == "dpo" and (problem := pair_problem(*conversations)) is not None:
        stats.skip(problem)
        return None
    return conversations


def _simplified(messages: list[Message], convert: Callable[[str], str], stats: Stats) -> list[Message]:
    """The messages with their Han characters simplified, as the corpus stage simplifies documents (the
    tokenizer learned simplified text); messages changed are counted as `converted_messages`."""
    converted = [{**message, "content": simplified(message["content"], convert)} for message in messages]
    stats.update("converted_messages", sum(new["content"] != old["content"] for new, old in zip(converted, messages)))
    return converted


def _batches(path: Path, config: ChatDataConfig, stats: Stats) -> Iterator[tuple[list[int], list[list[Message]]]]:
    lines, conversations = [], []
    convert = make_converter(config.convert) if config.simplify else None
    for number, record in read_json_lines(path, stats):
        found = _conversations(record, config.format, stats)
        if found is not None and convert is not None:
            found = [_simplified(messages, convert, stats) for messages in found]
        if found is not None:
            lines.append(number)
            conversations.extend(found)
        if len(lines) >= config.batch_records:
            yield lines, conversations
            lines, conversations = [], []
    if lines:
        yield lines, conversations


def encode_chat_file(
    path: str | Path, index: int, tokenizer_dir: str | Path, tokenizer_sha256: str, output_dir: str | Path, config: ChatDataConfig
) -> dict:
    """Tokenize one jsonl file into `part-<index>.parquet`; returns its counts."""
    encoder = ChatEncoder.load(Path(tokenizer_dir), tokenizer_sha256)
    counters = ("records", "rows", "truncated", "tokens", "trained_tokens", "converted_messages", "lines_with_replaced_bytes")
    stats = Stats(*counters, groups=("skipped",))
    width = len(FIELDS[config.format])
    output = Path(output_dir) / part_name(index)
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, SCHEMAS[config.format], compression="zstd") as writer:
        for lines, conversations in _batches(Path(path), config, stats):
            encoded = encoder.encode(conversations, last_reply_only=config.format == "dpo")
            rows = []
            for position, line in enumerate(lines):
                whole = encoded[position * width : (position + 1) * width]
                stats.update("truncated", int(any(len(tokens.ids) > config.max_seq_len for tokens in whole)))
                group = [tokens.truncated(config.max_seq_len) for tokens in whole]
                if any(tokens.trained == 0 for tokens in group):
                    stats.skip("no_assistant_token_within_max_seq_len", line)
                    continue
                rows.append(_row(group, line, config.format))
                stats.update("tokens", sum(len(tokens.ids) for tokens in group))
                stats.update("trained_tokens", sum(tokens.trained for tokens in group))
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[config.format]))
                stats.update("rows", len(rows))
    return {"input": str(path), "file": output.name, **stats.as_dict()}


def _row(group: list[ChatTokens], line: int, fmt: str) -> dict:
    if fmt == "sft":
        (tokens,) = group
        return {"input_ids": tokens.ids, "loss_mask": tokens.mask, "line": line}
    chosen, rejected = group
    return {
        "chosen_input_ids": chosen.ids,
        "chosen_loss_mask": chosen.mask,
        "rejected_input_ids": rejected.ids,
        "rejected_loss_mask": rejected.mask,
        "line": line,
    }


def chat_data_inputs(inputs: list[str], tokenizer_dir: str | Path, config: ChatDataConfig) -> tuple[str, str]:
    """The fingerprint a finished run over these inputs carries, and the tokenizer's sha256."""
    tokenizer_sha256 = read_manifest(tokenizer_dir)["tokenizer_sha256"]
    return fingerprint("chat_data", config, {**content_hashes(inputs), "tokenizer": tokenizer_sha256}), tokenizer_sha256


def finish_chat_data(
    output_dir: str | Path, expected: str, tokenizer_dir: str | Path, tokenizer_sha256: str, config: ChatDataConfig, results: list[dict]
) -> dict:
    """Check that something was kept, drop parts of an earlier run that no input made, write the manifest."""
    output_dir = Path(output_dir)
    total = Stats.total(results)
    if not total["rows"]:
        raise ValueError(f"no usable {config.format} records in {[r['input'] for r in results]}: skipped {total.group('skipped')}")
    made = {result["file"] for result in results}
    for stale in output_dir.glob("part-*.parquet"):
        if stale.name not in made:
            stale.unlink()
    tokenizer = load_tokenizer(tokenizer_dir)
    manifest = {
        "stage": "chat_data",
        "format": config.format,
        "fingerprint": expected,
        "tokenizer_sha256": tokenizer_sha256,
        "tokenizer_dir": str(Path(tokenizer_dir).resolve()),
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": tokenizer.token_to_id(EOS),
        "pad_id": tokenizer.token_to_id(PAD),
        "parts": results,
        "stats": total.as_dict(),
        "config": config.model_dump(mode="json"),
    }
    write_manifest(output_dir, manifest)
    return manifest
