"""chat_data flow: SFT conversations or DPO pairs in jsonl to token arrays, one task run per file: as many at once as
CPUs on threads, or one per worker on Dask or Ray (`config.runner`; the files and the output on a shared filesystem)."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tinylm.config import ChatDataConfig
from tinylm.flows.report import report_reused, report_stage, run_name
from tinylm.flows.retry_policy import DATA_TASK_OPTIONS
from tinylm.flows.runners import task_runner
from tinylm.stats import Stats
from tinylm.storage.manifest import finished_output
from tinylm.tokens.chat_arrays import ChatDataManifest
from tinylm.tokens.chat_data import chat_data_inputs, encode_chat_file, finish_chat_data


@task(name="encode-chat-file", cache_policy=NO_CACHE, **DATA_TASK_OPTIONS)
def encode_chat_file_task(
    path: str, index: int, tokenizer: str, tokenizer_sha256: str, output: str, config: ChatDataConfig
) -> dict:
    """One file as a task run; what it skipped is logged by reason, with the first lines of each."""
    result = encode_chat_file(path, index, tokenizer, tokenizer_sha256, output, config)
    skipped = Stats.from_dict(result)
    if skipped.group("skipped"):
        get_run_logger().warning("%s: skipped %s", path, skipped.skipped_summary())
    if unfilled := result.get("unfilled_placeholders"):
        get_run_logger().warning(
            "%s: placeholders trained as written %s: give them values in the placeholders setting", path, unfilled
        )
    return result


@flow(
    name="chat-data",
    description="Tokenize SFT conversations or DPO pairs (jsonl) with the chat template into memory-mapped arrays.",
    flow_run_name=run_name("chat-data", "output"),
)
def chat_data_flow(
    inputs: list[str],
    tokenizer: str = "workspace/tokenizers/default",
    output: str = "workspace/sft/default",
    config: ChatDataConfig = ChatDataConfig(),
    workspace: str = "workspace",
) -> dict:
    """Tokenize chat jsonl with the tokenizer's chat template; an identical earlier run is reused.

    Args:
        inputs: SFT or DPO jsonl files (relative: to where the serving process started)
        tokenizer: directory of the tokenizer whose chat template encodes them
        output: directory of the token parquet and its manifest
        config: format, sequence length and conversion
        workspace: home of the MLflow store (relative: to where the serving process started)
    """
    started = time.time()
    expected, tokenizer_sha256 = chat_data_inputs(inputs, tokenizer, config)
    if (done := finished_output(output, expected, ChatDataManifest)) is not None:
        return done.fields() | report_reused("chat-data", output, workspace)
    encode = encode_chat_files_flow.with_options(task_runner=task_runner(config.runner, 0))
    encoded = encode(inputs, tokenizer, tokenizer_sha256, output, config)
    manifest = finish_chat_data(output, expected, tokenizer, tokenizer_sha256, config, encoded)
    report_stage(
        "chat-data",
        manifest.stats,
        {"inputs": inputs, "tokenizer": tokenizer, "output": output, **config.model_dump(mode="json")},
        workspace,
        started,
    )
    return manifest.fields() | {"reused": False}


@flow(name="encode-chat-files", flow_run_name=run_name("encode-chat-files", "output"))
def encode_chat_files_flow(
    inputs: list[str], tokenizer: str, tokenizer_sha256: str, output: str, config: ChatDataConfig
) -> list[dict]:
    """Every file encoded in its own task run, on the runner the chat-data config names."""
    futures = [
        encode_chat_file_task.submit(path, index, tokenizer, tokenizer_sha256, output, config)
        for index, path in enumerate(inputs)
    ]
    return [future.result() for future in futures]
