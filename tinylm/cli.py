"""`tinylm` command line: each command runs the matching Prefect flow, so every run shows in Prefect."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from tinylm.config import (
    ChatDataConfig,
    ConvertConfig,
    CorpusConfig,
    EvalConfig,
    ExtractConfig,
    LoraConfig,
    PipelineConfig,
    RefreshConfig,
    ShardsConfig,
    TokenizerConfig,
    TrainConfig,
    read_yaml_settings,
)
from tinylm.storage.layout import run_checkpoints

if TYPE_CHECKING:
    from tinylm.inference.server import ServerSettings
    from tinylm.training.methods.distill import DistillConfig
    from tinylm.training.methods.dpo import DpoConfig

Config = TypeVar("Config", bound=BaseModel)


def configured(model: type[Config], path: Path | None, **flags: object) -> Config:
    """The config from YAML (or the defaults) with the flags that were given, validated as a whole: a flag
    meets the same bounds as the YAML, and only an absent flag counts as absent (`--vocab-size 0` is 0)."""
    settings = read_yaml_settings(path) if path else {}
    given = {name: value for name, value in flags.items() if value is not None}
    return model.model_validate(settings | given)


def _print_json(result: object) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


def _pipeline_settings(args: argparse.Namespace) -> PipelineConfig:
    config = configured(PipelineConfig, args.config, workspace=args.workspace)
    if args.restart:
        config = configured(PipelineConfig, args.config, workspace=args.workspace, train=config.train.model_dump() | {"restart": True})
    return config


def _pipeline(args: argparse.Namespace, config: PipelineConfig) -> None:
    from tinylm.flows.pipeline import pipeline_flow

    result = pipeline_flow(config)
    _print_json(result)
    if args.summary:
        print(where_to_look(config, result))


def where_to_look(config: PipelineConfig, result: dict) -> str:
    from tinylm.tracking.store import mlflow_ui_command, run_url

    workspace = Path(config.workspace).resolve()
    total = sum(result["seconds"].values())
    shares = "  ".join(f"{stage} {s:.0f}s ({s / total:.0%})" for stage, s in result["seconds"].items())
    return f"""
Done in {total:.0f}s: {shares}
Where to look:
  corpus        {result["corpus"]}  ({result["documents"]} documents)
  tokenizer     {result["tokenizer"]}  (vocabulary {result["vocab_size"]})
  shards        {result["shards"]}  ({result["tokens"]} tokens)
  checkpoints   {run_checkpoints(workspace, result["run_id"])}
  MLflow run    {result["run_id"]}  (final loss {result["final_loss"]:.3f}){_eval_lines(result)}

Browse the runs:
{_prefect_line()}
  MLflow        {run_url(config.workspace, result["run_id"]) or mlflow_ui_command(config.workspace, result["run_id"])}

Sample the model:
  tinylm generate --checkpoint {result["run_id"]} --workspace {config.workspace} --prompt "Anarchism is"
"""


def _eval_lines(result: dict) -> str:
    """The eval stage's headline numbers, when the pipeline had one."""
    if "eval" not in result:
        return ""
    from tinylm.evaluation.evaluate import headline

    return f"\n  eval run      {result['eval']['run_id']}  ({', '.join(headline(result['eval']))})"


def _prefect_line() -> str:
    """Where this command's flow runs are: the API it used, or the temporary server that ended with it."""
    import os

    from tinylm.flows.session.environment import TEMPORARY_MARK

    api = os.environ.get("PREFECT_API_URL")
    if api and TEMPORARY_MARK not in os.environ:
        return f"  Prefect       {api.removesuffix('/').removesuffix('/api')}/runs  (the API this run used)"
    return (
        "  Prefect       this run used a temporary API server that ended with the command; run `make servers`\n"
        "                (Prefect UI on http://127.0.0.1:4200) and later commands record their runs there"
    )


def _extract(args: argparse.Namespace, config: ExtractConfig) -> None:
    from tinylm.flows.extract import run_extract

    _print_json(run_extract([str(p) for p in args.input], str(args.output), config)["stats"])


def _corpus(args: argparse.Namespace, config: CorpusConfig) -> None:
    from tinylm.flows.corpus import corpus_flow

    index = str(args.index) if args.index else None
    inputs = [str(p) for p in args.input]
    _print_json(corpus_flow(inputs, str(args.output), config, index, args.workspace or "workspace")["stats"])


def _convert(args: argparse.Namespace, config: ConvertConfig) -> None:
    from tinylm.corpus.convert import convert_file

    _print_json(convert_file(args.input, args.output, config))


def _dedup(args: argparse.Namespace, config: CorpusConfig) -> None:
    from tinylm.flows.dedup import dedup_flow

    index = str(args.index) if args.index else None
    _print_json(dedup_flow(str(args.input), str(args.output), config, index, args.workspace or "workspace")["stats"])


def _tokenizer(args: argparse.Namespace, config: TokenizerConfig) -> None:
    from tinylm.flows.tokenizer import tokenizer_flow

    manifest = tokenizer_flow(str(args.corpus), str(args.output), config, args.workspace or "workspace")
    _print_json({key: manifest[key] for key in ("vocab_size", "sample", "compression", "memory", "reused")})


def _shards(args: argparse.Namespace, config: ShardsConfig) -> None:
    from tinylm.flows.shards import shards_flow

    manifest = shards_flow(str(args.corpus), str(args.tokenizer), str(args.output), config, args.workspace or "workspace")
    _print_json({key: manifest[key] for key in ("total_tokens", "documents", "dtype", "vocab_size")} | {"shards": len(manifest["shards"])})


def _chat_data(args: argparse.Namespace, config: ChatDataConfig) -> None:
    from tinylm.flows.chat_data import chat_data_flow

    manifest = chat_data_flow(
        [str(p) for p in args.input],
        str(args.tokenizer),
        str(args.output),
        config,
        args.workspace or "workspace",
    )
    _print_json({"format": manifest["format"], **manifest["stats"], "reused": manifest["reused"]})


def _train(args: argparse.Namespace, config: TrainConfig) -> None:
    if not _trained_as_worker(args.shards, config, args.workspace):
        from tinylm.flows.train import train_flow

        _print_json(train_flow(str(args.shards), config, args.workspace or "workspace"))


def _dpo_settings(args: argparse.Namespace) -> DpoConfig:
    from tinylm.training.methods.dpo import DpoConfig  # torch: only for the command that needs it

    return configured(DpoConfig, args.config, init_run_id=args.init, beta=args.beta, resume_run_id=args.resume, lora=_lora(args))


def _dpo(args: argparse.Namespace, config: DpoConfig) -> None:
    if not _trained_as_worker(args.pairs, config, args.workspace):
        from tinylm.flows.tuning import dpo_flow

        _print_json(dpo_flow(str(args.pairs), config, args.workspace or "workspace"))


def _distill_settings(args: argparse.Namespace) -> DistillConfig:
    from tinylm.training.methods.distill import DistillConfig

    return configured(DistillConfig, args.config, teacher_run_id=args.teacher, init_run_id=args.init, resume_run_id=args.resume)


def _distill(args: argparse.Namespace, config: DistillConfig) -> None:
    if not _trained_as_worker(args.data, config, args.workspace):
        from tinylm.flows.tuning import distill_flow

        _print_json(distill_flow(config, str(args.data), args.workspace or "workspace"))


def _trained_as_worker(data: Path, config: TrainConfig, workspace: str | None) -> bool:
    """Under torchrun, a process past rank 0 trains its share without a flow of its own (rank 0 runs the flow)."""
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        return False
    from tinylm.training.trainer import train_model

    train_model(str(data), workspace or "workspace", config)
    return True


def _merge(args: argparse.Namespace, _: None) -> None:
    from tinylm.flows.tuning import merge_flow

    _print_json(merge_flow(args.run_id, args.workspace or "workspace"))


def _refresh(args: argparse.Namespace, config: RefreshConfig) -> None:
    from tinylm.flows.refresh import refresh_flow

    _print_json(refresh_flow(config))


def _sampling(args: argparse.Namespace):
    from tinylm.model.generation import Sampling

    return Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty)


def _generate(args: argparse.Namespace, _: None) -> None:
    from tinylm.inference.generate import generate_text
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    print(generate_text(args.checkpoint, args.prompt, args.max_new_tokens, _sampling(args), args.seed))


def _chat(args: argparse.Namespace, _: None) -> None:
    import torch

    from tinylm.inference.generate import chat_reply, load_model
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    loaded = load_model(args.checkpoint, args.workspace or "workspace")
    generator = torch.Generator().manual_seed(args.seed)
    opening = [{"role": "system", "content": args.system}] if args.system else []
    history = list(opening)
    print("Type a message; /reset starts over; Ctrl-D ends.", file=sys.stderr)
    for line in sys.stdin:
        message = line.strip()
        if message == "/reset":
            history = list(opening)
            continue
        if not message:
            continue
        history.append({"role": "user", "content": message})
        pieces = []
        for piece in chat_reply(loaded, history, args.max_new_tokens, _sampling(args), generator):
            print(piece, end="", flush=True)
            pieces.append(piece)
        print()
        history.append({"role": "assistant", "content": "".join(pieces)})


def _export(args: argparse.Namespace, _: None) -> None:
    import tempfile

    from tinylm.inference.export import export_hf, register_model
    from tinylm.inference.generate import resolve_checkpoint
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_hf(resolve_checkpoint(args.checkpoint, Path(scratch)), args.output, args.workspace or "workspace")
    result = {"output": str(exported)}
    if args.register:
        result["registered"] = {"name": args.register, "version": register_model(args.checkpoint, exported, args.register)}
    _print_json(result)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinylm",
        description="Raw Chinese and English corpora to a trained small language model. "
        "Each command runs a Prefect flow (ephemeral API unless PREFECT_API_URL is set) and tracks to "
        "MLflow (a SQLite store in the workspace unless MLFLOW_TRACKING_URI is set).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, settings: Settings = lambda _: None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, settings=settings)
        sub.add_argument("--debug", action="store_true", help="on failure, show the whole traceback instead of one line")
        return sub

    _add_corpus_commands(command)
    _add_token_commands(command)
    _add_model_commands(command)
    _add_tuning_commands(command)
    _add_serving_commands(command)
    return parser


# A command's settings are built from its flags and YAML before anything starts (a Prefect server takes
# seconds), so a wrong value is refused at once; its handler then runs with them.
Settings = Callable[[argparse.Namespace], BaseModel | None]
Handler = Callable[[argparse.Namespace, Any], None]
Command = Callable[..., argparse.ArgumentParser]


def _lora(args: argparse.Namespace) -> LoraConfig | None:
    return LoraConfig(rank=args.lora_rank) if args.lora_rank else None


RESTART_HELP = (
    "train afresh even if an interrupted run of the same training exists "
    "(by default it is continued from its newest checkpoint; the abandoned run is marked KILLED)"
)


def _add_corpus_commands(command: Command) -> None:
    """The whole pipeline, and the corpus commands: extract, corpus, convert, dedup."""
    pipeline = command("pipeline", _pipeline, "Run corpus, tokenizer, shards and train as one pipeline flow.", _pipeline_settings)
    pipeline.add_argument("--config", type=Path, help="PipelineConfig YAML (inputs, workspace, and each stage's settings)")
    pipeline.add_argument("--workspace", help="override the config's workspace directory")
    pipeline.add_argument("--summary", action="store_true", help="print where the outputs are and how to browse them")
    pipeline.add_argument(
        "--restart",
        action="store_true",
        help=RESTART_HELP,
    )

    extract = command(
        "extract",
        _extract,
        "Extract raw files into Document parquet only, to inspect what a dump yields.",
        lambda args: configured(ExtractConfig, args.config, workers=args.workers),
    )
    extract.add_argument(
        "--input",
        type=Path,
        nargs="+",
        required=True,
        help="raw files: Wikipedia .xml[.bz2] (with its -index.txt.bz2 for parallel multistream), "
        "WuDao .json, .jsonl, .txt, .parquet; .gz/.bz2/.zst compressed",
    )
    extract.add_argument("--output", type=Path, required=True, help="directory for the Document parquet files")
    extract.add_argument("--workers", type=int, help="parallel processes (default: one per CPU)")
    extract.add_argument("--config", type=Path, help="ExtractConfig YAML")

    corpus = command(
        "corpus",
        _corpus,
        "Extract, convert, filter and deduplicate raw files into Document parquet.",
        lambda args: configured(CorpusConfig, args.config),
    )
    corpus.add_argument("--input", type=Path, nargs="+", required=True, help="raw files: Wikipedia .xml[.bz2], .jsonl, .txt")
    corpus.add_argument("--output", type=Path, required=True, help="corpus directory to write")
    corpus.add_argument("--config", type=Path, help="CorpusConfig YAML")
    corpus.add_argument("--index", type=Path, help="persistent dedup index directory: dedup against it, then add to it")
    corpus.add_argument("--workspace", help="workspace of the default MLflow store for the stats (default ./workspace)")

    convert = command(
        "convert",
        _convert,
        "Convert a text file to simplified Chinese line by line, like `opencc`.",
        lambda args: ConvertConfig.model_validate({"backend": args.backend} | ({"opencc_config": args.config} if args.config else {})),
    )
    convert.add_argument("--input", type=Path, required=True, help="UTF-8 text file")
    convert.add_argument("--output", type=Path, required=True, help="converted file (written atomically)")
    convert.add_argument("--backend", choices=["opencc", "zhconv"], default="opencc", help="conversion library")
    convert.add_argument("--config", choices=["t2s", "tw2s", "tw2sp", "hk2s"], help="OpenCC configuration (default t2s)")

    dedup = command(
        "dedup",
        _dedup,
        "Run quality filters and exact + MinHash dedup alone on Document parquet.",
        lambda args: configured(CorpusConfig, args.config),
    )
    dedup.add_argument("--input", type=Path, required=True, help="directory of Document parquet (e.g. `tinylm extract` output)")
    dedup.add_argument("--output", type=Path, required=True, help="corpus directory to write")
    dedup.add_argument("--config", type=Path, help="CorpusConfig YAML (its convert, filters and dedup sections)")
    dedup.add_argument("--index", type=Path, help="persistent dedup index directory: dedup against it, then add to it")
    dedup.add_argument("--workspace", help="workspace of the default MLflow store for the stats (default ./workspace)")


def _add_token_commands(command: Command) -> None:
    """The token commands: tokenizer, shards, chat-data."""
    tokenizer = command(
        "tokenizer",
        _tokenizer,
        "Train a byte-level BPE tokenizer on a corpus directory.",
        lambda args: configured(TokenizerConfig, args.config, vocab_size=args.vocab_size),
    )
    tokenizer.add_argument("--corpus", type=Path, required=True, help="corpus directory (output of `tinylm corpus`)")
    tokenizer.add_argument("--output", type=Path, required=True, help="tokenizer directory to write")
    tokenizer.add_argument("--vocab-size", type=int, help="vocabulary size (default 6400)")
    tokenizer.add_argument("--config", type=Path, help="TokenizerConfig YAML")
    tokenizer.add_argument("--workspace", help="workspace of the default MLflow store (default ./workspace)")

    shards = command(
        "shards",
        _shards,
        "Tokenize a corpus into fixed-size .bin token shards plus manifest.json.",
        lambda args: configured(ShardsConfig, args.config, shard_tokens=args.shard_tokens),
    )
    shards.add_argument("--corpus", type=Path, required=True, help="corpus directory")
    shards.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory")
    shards.add_argument("--output", type=Path, required=True, help="shard directory to write")
    shards.add_argument("--shard-tokens", type=int, help="tokens per shard (default 2^24)")
    shards.add_argument("--config", type=Path, help="ShardsConfig YAML")
    shards.add_argument("--workspace", help="workspace of the default MLflow store for the stats (default ./workspace)")

    chat = command(
        "chat-data",
        _chat_data,
        "Tokenize SFT conversations or DPO pairs (jsonl) with the chat template into parquet.",
        lambda args: configured(ChatDataConfig, args.config, format=args.format, max_seq_len=args.max_seq_len),
    )
    chat.add_argument("--input", type=Path, nargs="+", required=True, help="jsonl files, .gz/.bz2/.zst compressed or not")
    chat.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory")
    chat.add_argument("--output", type=Path, required=True, help="directory for the parquet parts and manifest.json")
    chat.add_argument("--format", choices=["sft", "dpo"], help='"conversations" per line (sft, default) or "chosen"/"rejected" (dpo)')
    chat.add_argument("--max-seq-len", type=int, help="tokens kept per conversation (default 512)")
    chat.add_argument("--config", type=Path, help="ChatDataConfig YAML")
    chat.add_argument("--workspace", help="workspace of the default MLflow store for the stats (default ./workspace)")


def _add_model_commands(command: Command) -> None:
    """The model commands: train, refresh, generate, chat, export."""
    train = command(
        "train",
        _train,
        "Pretrain a model shard by shard, checkpointing each shard to MLflow.",
        lambda args: configured(
            TrainConfig, args.config, resume_run_id=args.resume, init_run_id=args.init, restart=args.restart or None, lora=_lora(args)
        ),
    )
    train.add_argument("--shards", type=Path, required=True, help="shard directory (`tinylm shards`), or SFT data (`tinylm chat-data`)")
    train.add_argument("--config", type=Path, help="TrainConfig YAML (model shape, batch, schedule)")
    train.add_argument("--workspace", help="workspace for checkpoints and the default MLflow store (default ./workspace)")
    train.add_argument("--resume", metavar="RUN_ID", help="continue this MLflow run from its newest checkpoint")
    train.add_argument("--init", metavar="RUN_ID", help="start from this run's newest checkpoint (SFT after pretraining)")
    train.add_argument(
        "--restart",
        action="store_true",
        help=RESTART_HELP,
    )
    train.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank on --init's weights (the config's lora section)")

    refresh = command(
        "refresh",
        _refresh,
        "Train on corpus files new to the inbox, continuing the newest training run.",
        lambda args: configured(RefreshConfig, args.config, workspace=args.workspace, inbox=args.inbox),
    )
    refresh.add_argument("--config", type=Path, help="RefreshConfig YAML (inbox, tokenizer, and the corpus, shards and train settings)")
    refresh.add_argument("--workspace", help="override the config's workspace")
    refresh.add_argument("--inbox", help="override the config's inbox (a folder or an fsspec URL)")

    generate = command("generate", _generate, "Sample a continuation from a checkpoint.")
    generate.add_argument("--checkpoint", required=True, help="checkpoint directory, or an MLflow run id (its newest checkpoint)")
    generate.add_argument("--prompt", required=True, help="text to continue")
    _add_sampling_options(generate)

    chat = command("chat", _chat, "Chat with a checkpoint on stdin/stdout: multi-turn, streamed, with the chat template.")
    chat.add_argument("--checkpoint", required=True, help="checkpoint directory, or an MLflow run id (its newest checkpoint)")
    chat.add_argument("--system", help="system message that opens the conversation")
    _add_sampling_options(chat)

    export = command("export", _export, "Export a checkpoint as a Hugging Face Llama folder, optionally registered in MLflow.")
    export.add_argument("--checkpoint", required=True, help="checkpoint directory, or an MLflow run id (its newest checkpoint)")
    export.add_argument("--output", type=Path, required=True, help="folder to write (model.safetensors, config.json, tokenizer)")
    export.add_argument(
        "--register", metavar="NAME", help="log the folder to the run and register it as a new version of NAME (needs a run id)"
    )
    export.add_argument("--workspace", help="workspace of the default MLflow store (default ./workspace)")


def _add_tuning_commands(command: Command) -> None:
    """What follows SFT: DPO, distillation, and folding LoRA adapters into their base."""
    dpo = command(
        "dpo",
        _dpo,
        "Preference-optimise an SFT model on chat-data DPO pairs (DPO), checkpointing like pretraining.",
        _dpo_settings,
    )
    dpo.add_argument("--pairs", type=Path, required=True, help="directory of `tinylm chat-data --format dpo` output")
    dpo.add_argument("--init", metavar="RUN_ID", help="the SFT run the policy starts from (and the reference, unless the config names one)")
    dpo.add_argument("--beta", type=float, help="DPO beta (default 0.1)")
    dpo.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank instead of every weight")
    dpo.add_argument("--config", type=Path, help="DpoConfig YAML")
    dpo.add_argument("--resume", metavar="RUN_ID", help="continue this MLflow run from its newest checkpoint")
    dpo.add_argument("--workspace", help="workspace for checkpoints and the default MLflow store (default ./workspace)")

    distill = command(
        "distill",
        _distill,
        "Distil a teacher run into a student: KL to its token distributions, mixed with the data's loss.",
        _distill_settings,
    )
    distill.add_argument("--data", type=Path, required=True, help="chat data (SFT) or token shards, in the teacher's tokenizer")
    distill.add_argument("--teacher", metavar="RUN_ID", help="the teacher's MLflow run (its newest checkpoint)")
    distill.add_argument("--init", metavar="RUN_ID", help="start the student from this run (default: the config's model shape, fresh)")
    distill.add_argument("--config", type=Path, help="DistillConfig YAML (teacher, temperature, kl_weight, the student's shape)")
    distill.add_argument("--resume", metavar="RUN_ID", help="continue this MLflow run from its newest checkpoint")
    distill.add_argument("--workspace", help="workspace for checkpoints and the default MLflow store (default ./workspace)")

    merge = command("merge", _merge, "Fold a LoRA run's adapters into their base weights, as a new run (for DPO, export, serving).")
    merge.add_argument("--run-id", required=True, help="the MLflow run that trained the adapters")
    merge.add_argument("--workspace", help="workspace of the checkpoints and the default MLflow store (default ./workspace)")


def _add_serving_commands(command: Command) -> None:
    """Using a trained model: measuring it, and serving it."""
    evaluate = command(
        "eval",
        _eval,
        "Measure a model: perplexity per source and language, benchmarks through lm-evaluation-harness.",
        lambda args: configured(
            EvalConfig, args.config, perplexity_data=args.data, benchmarks=args.benchmark, num_fewshot=args.num_fewshot, limit=args.limit
        ),
    )
    evaluate.add_argument("--model", required=True, help="MLflow run id, checkpoint directory, exported folder, or models:/NAME/VERSION")
    evaluate.add_argument(
        "--data", action="append", help="corpus directory, shard directory (its validation split) or text file to score (repeatable)"
    )
    evaluate.add_argument(
        "--benchmark", action="append", help="folder of C-Eval/CMMLU-style csv or jsonl, or an lm-evaluation-harness task (repeatable)"
    )
    evaluate.add_argument("--num-fewshot", type=int, help="worked examples before each question (default 0)")
    evaluate.add_argument("--limit", type=int, help="score at most this many items per benchmark task")
    evaluate.add_argument("--config", type=Path, help="EvalConfig YAML")
    evaluate.add_argument("--workspace", help="workspace of the checkpoints and the default MLflow store (default ./workspace)")

    serve = command(
        "serve", _serve, "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions).", _serve_settings
    )
    serve.add_argument("--model", required=True, help="checkpoint directory, MLflow run id, exported folder, or models:/NAME/VERSION")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only; 0.0.0.0 to expose it)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--name", default="tinylm", help="the model's id in /v1/models and in responses")
    serve.add_argument("--max-tokens", type=int, default=512, help="most tokens one request may generate")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body accepted")
    serve.add_argument("--max-running", type=int, default=4, help="generations at once (each holds a KV cache for its context)")
    serve.add_argument("--max-waiting", type=int, default=32, help="requests queued for a generation; more get a 429")
    serve.add_argument("--request-timeout", type=float, default=120, help="seconds a request may take, its wait included")
    serve.add_argument("--workspace", help="workspace of the default MLflow store (default ./workspace)")


def _eval(args: argparse.Namespace, config: EvalConfig) -> None:
    from tinylm.flows.evaluate import eval_flow

    _print_json(eval_flow(args.model, config, args.workspace or "workspace"))


def _serve_settings(args: argparse.Namespace) -> ServerSettings:
    import os

    from tinylm.inference.server import ServerSettings

    return ServerSettings(
        model_name=args.name,
        max_tokens=args.max_tokens,
        max_body_bytes=args.max_body_bytes,
        api_key=os.environ.get("TINYLM_API_KEY") or None,
        max_running=args.max_running,
        max_waiting=args.max_waiting,
        request_timeout_s=args.request_timeout,
    )


def _serve(args: argparse.Namespace, settings: ServerSettings) -> None:
    import uvicorn

    from tinylm.inference.generate import load_model
    from tinylm.inference.server import build_app
    from tinylm.tracking.store import use_experiment

    workspace = args.workspace or "workspace"
    use_experiment("tinylm", workspace)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(f"tinylm serve: listening on {args.host} without an API key (set TINYLM_API_KEY to require one)", file=sys.stderr)
    uvicorn.run(build_app(load_model(args.model, workspace), settings), host=args.host, port=args.port, log_level="warning")


def _add_sampling_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--max-new-tokens", type=int, default=128)
    sub.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    sub.add_argument("--top-k", type=int, default=50, help="0 for no top-k filter")
    sub.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling; 1 for none")
    sub.add_argument("--repetition-penalty", type=float, default=1.1, help="1 for none")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--workspace", help="workspace of the default MLflow store (default ./workspace)")


@contextmanager
def progress_bars() -> Iterator[None]:
    """A bar per long stage (extract, shards, train) on stderr while a command runs, fed by the
    same reports that update the Prefect progress artifacts; nothing when stderr is not a terminal."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from tinylm.flows.report import PROGRESS_LISTENERS

    bars: dict[str, int] = {}
    columns = (TextColumn("{task.description:>9}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not sys.stderr.isatty()) as progress:

        def show(stage: str, done: float) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=1.0)
            progress.update(bars[stage], completed=done)

        PROGRESS_LISTENERS.append(show)
        try:
            yield
        finally:
            PROGRESS_LISTENERS.remove(show)


# Commands that run no Prefect flow: they print their own errors and nothing of Prefect's.
_LOCAL_COMMANDS = {"convert", "generate", "chat", "export", "serve"}


def one_line(error: BaseException) -> str:
    """What went wrong, on one line: the error's own message (which names the file), or each invalid setting."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'config'}: {item['msg']}" for item in error.errors())
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if isinstance(error, (KeyError, AttributeError)) or not message else message


def workspace_of(args: argparse.Namespace) -> str:
    """The workspace a command works in: --workspace, else the one its config file names (pipeline, refresh), else ./workspace."""
    if getattr(args, "workspace", None):
        return args.workspace
    config = getattr(args, "config", None)
    if args.command in ("pipeline", "refresh") and config is not None and config.is_file():
        return str(read_yaml_settings(config).get("workspace", "workspace"))
    return "workspace"


def main(argv: list[str] | None = None) -> int:
    from tinylm.flows.session.environment import apply_defaults, startup_timeout, use_running_servers
    from tinylm.flows.session.temporary_server import ensure_prefect_api

    apply_defaults()
    args = build_parser().parse_args(argv)
    runs_flows = args.command not in _LOCAL_COMMANDS
    try:
        settings = args.settings(args)
        if runs_flows:
            use_running_servers(workspace_of(args))
            ensure_prefect_api(args.command, startup_timeout())
            if not args.debug:
                from tinylm.flows.session.console import quiet_prefect_tracebacks

                quiet_prefect_tracebacks()
        with progress_bars():
            args.handler(args, settings)
    except Exception as error:
        if args.debug:
            raise
        print(f"tinylm {args.command}: {one_line(error)}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
