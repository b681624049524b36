"""`tinylm` command line: each command runs the matching Prefect flow, so every run shows in Prefect."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tinylm.cli_flags import add_config_flags, configured
from tinylm.config import (
    ChatDataConfig,
    ConvertConfig,
    CorpusConfig,
    EvalConfig,
    ExtractConfig,
    PipelineConfig,
    RefreshConfig,
    ShardsConfig,
    TokenizerConfig,
    TrainConfig,
    read_yaml_settings,
)
from tinylm.storage.layout import run_checkpoints

# What every option naming a model takes (tinylm/weights/reference.py finds it).
MODEL_FORMS = (
    "an MLflow run id (its newest checkpoint), a run's or a step's checkpoint directory, an exported folder, "
    "or models:/NAME/VERSION"
)

if TYPE_CHECKING:
    from tinylm.inference.settings import ServerSettings
    from tinylm.training.distill_config import DistillConfig
    from tinylm.training.dpo_config import DpoConfig
    from tinylm.training.grpo_config import GrpoConfig


def _print_json(result: object) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


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

    manifest = shards_flow(
        str(args.corpus), str(args.tokenizer), str(args.output), config, args.workspace or "workspace"
    )
    _print_json(
        {key: manifest[key] for key in ("total_tokens", "documents", "dtype", "vocab_size")}
        | {"shards": len(manifest["shards"])}
    )


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


def _dpo(args: argparse.Namespace, config: DpoConfig) -> None:
    if not _trained_as_worker(args.pairs, config, args.workspace):
        from tinylm.flows.tuning import dpo_flow

        _print_json(dpo_flow(str(args.pairs), config, args.workspace or "workspace"))


def _grpo(args: argparse.Namespace, config: GrpoConfig) -> None:
    workspace = args.workspace or "workspace"
    if int(os.environ.get("RANK", "0")) > 0:
        from tinylm.training.methods.grpo import grpo_prompts

        _trained_as_worker(grpo_prompts(args.prompts, workspace, config), config, workspace)
        return
    from tinylm.flows.tuning import grpo_flow

    _print_json(grpo_flow(config, str(args.prompts), workspace))


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

    return Sampling(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty
    )


def _generate(args: argparse.Namespace, _: None) -> None:
    from tinylm.inference.generate import generate_text, load_model
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    loaded = load_model(args.checkpoint, args.workspace or "workspace", args.context)
    print(generate_text(loaded, args.prompt, args.max_new_tokens, _sampling(args), args.seed))


def _chat(args: argparse.Namespace, _: None) -> None:
    import torch

    from tinylm.inference.generate import chat_reply, load_model
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    loaded = load_model(args.checkpoint, args.workspace or "workspace", args.context)
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

    from tinylm.export.gguf import export_gguf, gguf_name
    from tinylm.export.hf import export_hf
    from tinylm.export.registry import GGUF_ARTIFACT_PATH, HF_ARTIFACT_PATH, register_model
    from tinylm.tracking.store import use_experiment
    from tinylm.weights.reference import locate_model

    gguf = args.format == "gguf"
    if args.quant and not gguf or args.dtype and gguf:
        raise ValueError("--quant is for --format gguf, --dtype for --format hf: drop the other")
    workspace = Path(args.workspace or "workspace")
    use_experiment("tinylm", workspace)
    with tempfile.TemporaryDirectory() as scratch:
        located = locate_model(args.checkpoint, workspace, Path(scratch))
        if args.register and located.run_id is None:
            raise ValueError(f"{args.checkpoint} names no training run to register the model under: give the run id")
        checkpoint = located.checkpoint("export")
        if gguf:
            exported = export_gguf(checkpoint, args.output, workspace, args.quant or "q8_0", args.context)
        else:
            exported = export_hf(checkpoint, args.output, workspace, args.dtype or "float32", args.context)
    result = {"output": str(exported)}
    if gguf:
        result["gguf"] = str(exported / gguf_name(args.quant or "q8_0"))
    if args.register:
        artifact_path = GGUF_ARTIFACT_PATH if gguf else HF_ARTIFACT_PATH
        result["registered"] = {
            "name": args.register,
            "version": register_model(located.run_id, exported, args.register, artifact_path),
        }
    _print_json(result)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Every command; the config flags of `selected` alone when one is named (None: of every command), since
    a command's config may import torch, which `tinylm extract` has no need to pay for."""
    parser = argparse.ArgumentParser(
        prog="tinylm",
        description="Raw Chinese and English corpora to a trained small language model. "
        "Each command runs a Prefect flow (ephemeral API unless PREFECT_API_URL is set) and tracks to "
        "MLflow (a SQLite store in the workspace unless MLFLOW_TRACKING_URI is set).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Handler, help_text: str, config: ConfigSource | None = None, **options: Any
    ) -> Parser:
        """A subcommand; with `config`, a flag for each of its settings (see cli_flags), `--config` for its YAML, and
        its settings built from both. `options`: `aliases` (older flag names), `fixed` (settings the command's own
        options decide), `workspace` (the --workspace help, for commands that work in one), `yaml` (False: no
        --config)."""
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--debug", action="store_true", help="on failure, show the whole traceback instead of one line"
        )
        if "workspace" in options:
            sub.add_argument("--workspace", help=f"{options['workspace']} (default ./workspace)")
        settings: Settings = lambda _: None  # noqa: E731
        if config is not None:
            if selected in (None, name):
                model = config()
                if options.get("yaml", True):
                    sub.add_argument("--config", type=Path, help=f"{model.__name__} YAML; flags given override it")
                add_config_flags(sub, model, options.get("aliases"), options.get("exclude", ()))
                fixed = options.get("fixed", lambda _: {})
                settings = lambda args: configured(model, args, **fixed(args))  # noqa: E731
            else:
                sub.add_argument("--config", type=Path, help="the command's YAML config")
        sub.set_defaults(handler=handler, settings=settings)
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
ConfigSource = Callable[[], type[BaseModel]]  # imported when its command is used: a method's config imports torch
Parser = argparse.ArgumentParser
Command = Callable[..., Parser]
CHECKPOINTS = "workspace of the checkpoints and the default MLflow store"
STORE = "workspace of the default MLflow store"
# The flags these settings had before they were derived from the configs, kept as aliases.
TRAINING_ALIASES = {"init_run_id": "--init", "resume_run_id": "--resume", "lora.rank": "--lora-rank"}


def _add_corpus_commands(command: Command) -> None:
    """The whole pipeline, and the corpus commands: extract, corpus, convert, dedup."""
    pipeline = command(
        "pipeline",
        _pipeline,
        "Run corpus, tokenizer, shards and train as one pipeline flow.",
        lambda: PipelineConfig,
        aliases={"train.restart": "--restart"},
    )
    pipeline.add_argument("--summary", action="store_true", help="print where the outputs are and how to browse them")

    extract = command(
        "extract",
        _extract,
        "Extract raw files into Document parquet only, to inspect what a dump yields.",
        lambda: ExtractConfig,
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

    corpus = command(
        "corpus",
        _corpus,
        "Extract, convert, filter and deduplicate raw files into Document parquet.",
        lambda: CorpusConfig,
        workspace=STORE,
    )
    corpus.add_argument(
        "--input", type=Path, nargs="+", required=True, help="raw files: Wikipedia .xml[.bz2], .jsonl, .txt"
    )
    corpus.add_argument("--output", type=Path, required=True, help="corpus directory to write")
    corpus.add_argument("--index", type=Path, help="persistent dedup index directory: dedup against it, then add to it")

    convert = command(
        "convert",
        _convert,
        "Convert a text file to simplified Chinese line by line, like `opencc`.",
        lambda: ConvertConfig,
        aliases={"opencc_config": "--config"},  # as `opencc -c`
        yaml=False,
    )
    convert.add_argument("--input", type=Path, required=True, help="UTF-8 text file")
    convert.add_argument("--output", type=Path, required=True, help="converted file (written atomically)")

    dedup = command(
        "dedup",
        _dedup,
        "Run quality filters and exact + MinHash dedup alone on Document parquet.",
        lambda: CorpusConfig,
        workspace=STORE,
    )
    dedup.add_argument(
        "--input", type=Path, required=True, help="directory of Document parquet (e.g. `tinylm extract` output)"
    )
    dedup.add_argument("--output", type=Path, required=True, help="corpus directory to write")
    dedup.add_argument("--index", type=Path, help="persistent dedup index directory: dedup against it, then add to it")


def _add_token_commands(command: Command) -> None:
    """The token commands: tokenizer, shards, chat-data."""
    tokenizer = command(
        "tokenizer",
        _tokenizer,
        "Train a byte-level BPE tokenizer on a corpus directory.",
        lambda: TokenizerConfig,
        workspace=STORE,
    )
    tokenizer.add_argument("--corpus", type=Path, required=True, help="corpus directory (output of `tinylm corpus`)")
    tokenizer.add_argument("--output", type=Path, required=True, help="tokenizer directory to write")

    shards = command(
        "shards",
        _shards,
        "Tokenize a corpus into fixed-size .bin token shards plus manifest.json.",
        lambda: ShardsConfig,
        workspace=STORE,
    )
    shards.add_argument("--corpus", type=Path, required=True, help="corpus directory")
    shards.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory")
    shards.add_argument("--output", type=Path, required=True, help="shard directory to write")

    chat = command(
        "chat-data",
        _chat_data,
        "Tokenize SFT conversations or DPO pairs (jsonl) with the chat template into parquet.",
        lambda: ChatDataConfig,
        workspace=STORE,
    )
    chat.add_argument(
        "--input", type=Path, nargs="+", required=True, help="jsonl files, .gz/.bz2/.zst compressed or not"
    )
    chat.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory")
    chat.add_argument("--output", type=Path, required=True, help="directory for the parquet parts and manifest.json")


def _add_model_commands(command: Command) -> None:
    """The model commands: train, refresh, generate, chat, export."""
    train = command(
        "train",
        _train,
        "Pretrain a model shard by shard, checkpointing each shard to MLflow.",
        lambda: TrainConfig,
        aliases=TRAINING_ALIASES,
        workspace=CHECKPOINTS,
    )
    train.add_argument(
        "--shards", type=Path, required=True, help="shard directory (`tinylm shards`), or SFT data (`tinylm chat-data`)"
    )

    command(
        "refresh",
        _refresh,
        "Train on corpus files new to the inbox, continuing the newest training run.",
        lambda: RefreshConfig,
    )

    generate = command("generate", _generate, "Sample a continuation from a checkpoint.", workspace=STORE)
    generate.add_argument("--checkpoint", required=True, metavar="MODEL", help=MODEL_FORMS)
    generate.add_argument("--prompt", required=True, help="text to continue")
    _add_sampling_options(generate)

    chat = command(
        "chat",
        _chat,
        "Chat with a checkpoint on stdin/stdout: multi-turn, streamed, with the chat template.",
        workspace=STORE,
    )
    chat.add_argument("--checkpoint", required=True, metavar="MODEL", help=MODEL_FORMS)
    chat.add_argument("--system", help="system message that opens the conversation")
    _add_sampling_options(chat)

    from tinylm.export.gguf_convert import GGUF_TYPES  # standard library only: the parser stays light

    export = command(
        "export",
        _export,
        "Export a checkpoint as a Hugging Face folder (Llama, or Mixtral/Granite-MoE for a mixture of experts) or as "
        "GGUF for llama.cpp and ollama, optionally registered in MLflow.",
        workspace=STORE,
    )
    export.add_argument(
        "--checkpoint",
        required=True,
        metavar="MODEL",
        help="a tinylm checkpoint: an MLflow run id (its newest) or a run's or a step's checkpoint directory",
    )
    export.add_argument(
        "--output",
        type=Path,
        required=True,
        help="folder to write: model.safetensors, config.json and the tokenizer; or model-QUANT.gguf and a Modelfile",
    )
    export.add_argument("--format", choices=["hf", "gguf"], default="hf", help="Hugging Face folder or GGUF file")
    _add_context_option(export)
    export.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="hf: the weights' dtype (default float32)"
    )
    export.add_argument(
        "--quant",
        choices=GGUF_TYPES,
        help="gguf: llama.cpp's type for the weights (default q8_0)",
    )
    export.add_argument(
        "--register",
        metavar="NAME",
        help="log the folder to the run and register it as a new version of NAME (needs a run id)",
    )


def _dpo_config() -> type[BaseModel]:
    from tinylm.training.dpo_config import DpoConfig

    return DpoConfig


def _grpo_config() -> type[BaseModel]:
    from tinylm.training.grpo_config import GrpoConfig

    return GrpoConfig


def _distill_config() -> type[BaseModel]:
    from tinylm.training.distill_config import DistillConfig

    return DistillConfig


def _add_tuning_commands(command: Command) -> None:
    """What follows SFT: DPO, GRPO, distillation, and folding LoRA adapters into their base."""
    dpo = command(
        "dpo",
        _dpo,
        "Preference-optimise an SFT model on chat-data DPO pairs (DPO), checkpointing like pretraining.",
        _dpo_config,
        aliases=TRAINING_ALIASES,
        workspace=CHECKPOINTS,
    )
    dpo.add_argument("--pairs", type=Path, required=True, help="directory of `tinylm chat-data --format dpo` output")

    grpo = command(
        "grpo",
        _grpo,
        "Reinforce an SFT model with verifiable rewards (GRPO): sample groups of completions, score, compare.",
        _grpo_config,
        aliases=TRAINING_ALIASES | {"rewards": "--reward"},
        exclude=("seq_len", "eval_batches", "think_token_weight"),
        workspace=CHECKPOINTS,
    )
    grpo.add_argument(
        "--prompts",
        type=Path,
        required=True,
        help="JSON Lines of records with a prompt (or messages) and the fields the rewards read (answer)",
    )

    distill = command(
        "distill",
        _distill,
        "Distil a teacher run into a student: KL to its token distributions, mixed with the data's loss.",
        _distill_config,
        aliases=TRAINING_ALIASES | {"teacher_run_id": "--teacher"},
        workspace=CHECKPOINTS,
    )
    distill.add_argument(
        "--data", type=Path, required=True, help="chat data (SFT) or token shards, in the teacher's tokenizer"
    )

    merge = command(
        "merge",
        _merge,
        "Fold a LoRA run's adapters into their base weights as a new run (for DPO, export, serving).",
        workspace=CHECKPOINTS,
    )
    merge.add_argument("--run-id", required=True, help="the MLflow run that trained the adapters")


def _server_settings() -> type[BaseModel]:
    from tinylm.inference.settings import ServerSettings

    return ServerSettings


def _add_serving_commands(command: Command) -> None:
    """Using a trained model: measuring it, and serving it."""
    evaluate = command(
        "eval",
        _eval,
        "Measure a model: perplexity per source and language, benchmarks through lm-evaluation-harness.",
        lambda: EvalConfig,
        aliases={"perplexity_data": "--data", "benchmarks": "--benchmark"},
        workspace=CHECKPOINTS,
    )
    evaluate.add_argument("--model", required=True, help=MODEL_FORMS)
    evaluate.add_argument(
        "--table", action="store_true", help="print the benchmark scores as a leaderboard table, not the results' JSON"
    )

    serve = command(
        "serve",
        _serve,
        "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions).",
        _server_settings,
        aliases={"model_name": "--name", "request_timeout_s": "--request-timeout"},
        exclude={"api_key"},  # a secret: from TINYLM_API_KEY, never the command line (ps shows it)
        fixed=lambda _: {"api_key": os.environ.get("TINYLM_API_KEY") or None},
        workspace=STORE,
    )
    serve.add_argument("--model", required=True, help=MODEL_FORMS)
    _add_context_option(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only; 0.0.0.0 to expose it)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")


def _eval(args: argparse.Namespace, config: EvalConfig) -> None:
    from tinylm.evaluation.leaderboard import leaderboard
    from tinylm.flows.evaluate import eval_flow

    result = eval_flow(args.model, config, args.workspace or "workspace")
    if args.table:
        print(leaderboard(result["benchmarks"]))
    else:
        _print_json(result)


def _serve(args: argparse.Namespace, settings: ServerSettings) -> None:
    import uvicorn

    from tinylm.inference.app import build_app
    from tinylm.inference.generate import load_model
    from tinylm.tracking.store import use_experiment

    workspace = args.workspace or "workspace"
    use_experiment("tinylm", workspace)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(
            f"tinylm serve: listening on {args.host} without an API key (set TINYLM_API_KEY to require one)",
            file=sys.stderr,
        )
    uvicorn.run(
        build_app(load_model(args.model, workspace, args.context), settings),
        host=args.host,
        port=args.port,
        log_level="warning",
    )


def _add_context_option(sub: Parser) -> None:
    sub.add_argument(
        "--context",
        type=int,
        metavar="TOKENS",
        help="the context to read (default: the trained one); past the trained one, YaRN stretches the rotary "
        "positions by the ratio",
    )


def _add_sampling_options(sub: Parser) -> None:
    _add_context_option(sub)
    sub.add_argument("--max-new-tokens", type=int, default=128)
    sub.add_argument("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    sub.add_argument("--top-k", type=int, default=50, help="0 for no top-k filter")
    sub.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling; 1 for none")
    sub.add_argument("--repetition-penalty", type=float, default=1.1, help="1 for none")
    sub.add_argument("--seed", type=int, default=0)


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
    return (
        f"{type(error).__name__}: {message}"
        if isinstance(error, (KeyError, AttributeError)) or not message
        else message
    )


def workspace_of(args: argparse.Namespace) -> str:
    """The workspace a command works in: --workspace, else the one its config file names (pipeline, refresh), else
    ./workspace."""
    given = getattr(args, "workspace", None) or vars(args).get("config.workspace")
    if given:
        return given
    config = getattr(args, "config", None)
    if args.command in ("pipeline", "refresh") and config is not None and config.is_file():
        return str(read_yaml_settings(config).get("workspace", "workspace"))
    return "workspace"


def _command_named(argv: list[str]) -> str | None:
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    from tinylm.flows.session.environment import apply_defaults, startup_timeout, use_running_servers
    from tinylm.flows.session.temporary_server import ensure_prefect_api

    apply_defaults()
    args = build_parser(_command_named(sys.argv[1:] if argv is None else argv)).parse_args(argv)
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
