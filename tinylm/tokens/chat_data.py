"""Chat data stage: SFT conversations or DPO pairs in jsonl to token parquet for fine-tuning.

One parquet part per input file, streamed in row groups: `input_ids` and `loss_mask`
per conversation (for DPO, `chosen_*` and `rejected_*`), plus the input line it came
from. Records that are not conversations are skipped and counted by reason; ones longer
than `max_seq_len` are cut, and dropped (counted) only if no assistant token survives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ChatDataConfig
from tinylm.storage.atomic import atomic_path
from tinylm.storage.manifest import content_hashes, fingerprint, is_complete, read_manifest, write_manifest
from tinylm.tokens.chat_template import ChatEncoder, ChatTokens, Message, conversation_problem
from tinylm.corpus.readers.base import ReadStats, read_json_lines
from tinylm.flows.report import merge_counts
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.tokens.tokenizer import EOS, PAD, load_tokenizer

_IDS = pa.list_(pa.int32())
_MASK = pa.list_(pa.int8())
SCHEMAS = {
    "sft": pa.schema([("input_ids", _IDS), ("loss_mask", _MASK), ("line", pa.int64())]),
    "dpo": pa.schema(
        [("chosen_input_ids", _IDS), ("chosen_loss_mask", _MASK), ("rejected_input_ids", _IDS), ("rejected_loss_mask", _MASK), ("line", pa.int64())]
    ),
}
FIELDS = {"sft": ("conversations",), "dpo": ("chosen", "rejected")}


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _conversations(record: Any, fmt: str, stats: ReadStats) -> list[list[Message]] | None:
    """The record's conversations in the format's field order, or None (counted) when it has none usable."""
    if not isinstance(record, dict) or any(name not in record for name in FIELDS[fmt]):
        stats.skip(f"no_{'_'.join(FIELDS[fmt])}_field")
        return None
    conversations = [record[name] for name in FIELDS[fmt]]
    for messages in conversations:
        if (problem := conversation_problem(messages)) is not None:
            stats.skip(problem)
            return None
    return conversations


def _batches(path: Path, config: ChatDataConfig, stats: ReadStats) -> Iterator[tuple[list[int], list[list[Message]]]]:
    lines, conversations = [], []
    for number, record in read_json_lines(path, stats):
        found = _conversations(record, config.format, stats)
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
    stats = ReadStats()
    counts: Counter[str] = Counter()
    width = len(FIELDS[config.format])
    output = Path(output_dir) / part_name(index)
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, SCHEMAS[config.format], compression="zstd") as writer:
        for lines, conversations in _batches(Path(path), config, stats):
            encoded = encoder.encode(conversations)
            rows = []
            for position, line in enumerate(lines):
                whole = encoded[position * width : (position + 1) * width]
                counts["truncated"] += any(len(tokens.ids) > config.max_seq_len for tokens in whole)
                group = [tokens.truncated(config.max_seq_len) for tokens in whole]
                if any(tokens.trained == 0 for tokens in group):
                    stats.skip("no_assistant_token_within_max_seq_len", line)
                    continue
                rows.append(_row(group, line, config.format))
                counts["tokens"] += sum(len(tokens.ids) for tokens in group)
                counts["trained_tokens"] += sum(tokens.trained for tokens in group)
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[config.format]))
                stats.documents += len(rows)
    return {"input": str(path), "file": output.name, "rows": stats.documents, **dict(counts), **stats.as_dict()}


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
    skipped = merge_counts(results, "skipped")
    if not sum(result["rows"] for result in results):
        raise ValueError(f"no usable {config.format} records in {[r['input'] for r in results]}: skipped {skipped}")
    made = {result["file"] for result in results}
    for stale in output_dir.glob("part-*.parquet"):
        if stale.name not in made:
            stale.unlink()
    stats = {
        "records": sum(r["records"] for r in results),
        "rows": sum(r["rows"] for r in results),
        "skipped": skipped,
        "truncated": sum(r.get("truncated", 0) for r in results),
        "tokens": sum(r.get("tokens", 0) for r in results),
        "trained_tokens": sum(r.get("trained_tokens", 0) for r in results),
        "lines_with_replaced_bytes": sum(r["lines_with_replaced_bytes"] for r in results),
    }
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
        "stats": stats,
        "config": config.model_dump(mode="json"),
    }
    write_manifest(output_dir, manifest)
    return manifest


def build_chat_data(inputs: list[str], tokenizer_dir: str | Path, output_dir: str | Path, config: ChatDataConfig) -> dict:
    """The whole stage in one process, file after file (the flow encodes files in parallel task runs)."""
    expected, tokenizer_sha256 = chat_data_inputs(inputs, tokenizer_dir, config)
    if is_complete(output_dir, expected):
        return read_manifest(output_dir) | {"reused": True}
    results = [encode_chat_file(path, index, tokenizer_dir, tokenizer_sha256, output_dir, config) for index, path in enumerate(inputs)]
    return finish_chat_data(output_dir, expected, tokenizer_dir, tokenizer_sha256, config, results) | {"reused": False}


encode_chat_file_task = task(encode_chat_file, name="encode-chat-file", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
