"""What each `tinylm` command does with its parsed arguments and settings; tinylm/registry.py names these handlers
and cli.py calls them. Each imports its heavy modules (a flow, torch) when it runs, so the parser stays instant."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
)
from tinylm.registry import command, load
from tinylm.storage.layout import run_checkpoints

if TYPE_CHECKING:
    from tinylm.inference.settings import ServerSettings


def check_corpus_rules(config: CorpusConfig | PipelineConfig | RefreshConfig) -> None:
    """Load the user's quality rules the settings name and validate their settings, before any server starts; the
    built-in rules need no loading (and their settings were validated with the config)."""
    filters = config.filters if isinstance(config, CorpusConfig) else config.corpus.filters
    if any(":" in name for name in filters.rules):
        from tinylm.corpus.quality import quality_rules

        quality_rules(filters)


def train_method(args: argparse.Namespace, config: TrainConfig) -> None:
    """Any training method's command: its flow on rank 0. Under torchrun, a process past rank 0 trains its share
    without a flow of its own (rank 0 runs the flow), from what the method makes of its input."""
    entry = command(args.command)
    data = str(getattr(args, entry.data.name))
    workspace = args.workspace or "workspace"
    if int(os.environ.get("RANK", "0")) > 0:
        from tinylm.training.trainer import train_model

        prepared = load(entry.prepare)(data, workspace, config) if entry.prepare else data
        train_model(str(prepared), workspace, config)
        return
    flow = load(entry.flow)
    print_json(flow(**{entry.data.name: data, "config": config, "workspace": workspace}))


def print_json(result: object) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))


def pipeline(args: argparse.Namespace, config: PipelineConfig) -> None:
    from tinylm.flows.pipeline import pipeline_flow

    result = pipeline_flow(config)
    print_json(result)
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
    from tinylm.flows.session.environment import TEMPORARY_MARK

    api = os.environ.get("PREFECT_API_URL")
    if api and TEMPORARY_MARK not in os.environ:
        return f"  Prefect       {api.removesuffix('/').removesuffix('/api')}/runs  (the API this run used)"
    return (
        "  Prefect       this run used a temporary API server that ended with the command; run `make servers`\n"
        "                (Prefect UI on http://127.0.0.1:4200) and later commands record their runs there"
    )


def extract(args: argparse.Namespace, config: ExtractConfig) -> None:
    from tinylm.flows.extract import run_extract

    print_json(run_extract([str(p) for p in args.input], str(args.output), config).stats)


def corpus(args: argparse.Namespace, config: CorpusConfig) -> None:
    from tinylm.flows.corpus import corpus_flow

    index = str(args.index) if args.index else None
    inputs = [str(p) for p in args.input]
    print_json(corpus_flow(inputs, str(args.output), config, index, args.workspace or "workspace")["stats"])


def convert(args: argparse.Namespace, config: ConvertConfig) -> None:
    from tinylm.corpus.convert import convert_file

    print_json(convert_file(args.input, args.output, config))


def dedup(args: argparse.Namespace, config: CorpusConfig) -> None:
    from tinylm.flows.dedup import dedup_flow

    index = str(args.index) if args.index else None
    print_json(dedup_flow(str(args.input), str(args.output), config, index, args.workspace or "workspace")["stats"])


def tokenizer(args: argparse.Namespace, config: TokenizerConfig) -> None:
    from tinylm.flows.tokenizer import tokenizer_flow

    result = tokenizer_flow(str(args.corpus), str(args.output), config, args.workspace or "workspace")
    print_json({key: result[key] for key in ("vocab_size", "sample", "compression", "memory", "reused")})


def shards(args: argparse.Namespace, config: ShardsConfig) -> None:
    from tinylm.flows.shards import shards_flow

    result = shards_flow(str(args.corpus), str(args.tokenizer), str(args.output), config, args.workspace or "workspace")
    print_json(
        {key: result[key] for key in ("total_tokens", "documents", "dtype", "vocab_size")}
        | {"shards": len(result["shards"])}
    )


def chat_data(args: argparse.Namespace, config: ChatDataConfig) -> None:
    from tinylm.flows.chat_data import chat_data_flow

    result = chat_data_flow(
        [str(p) for p in args.input],
        str(args.tokenizer),
        str(args.output),
        config,
        args.workspace or "workspace",
    )
    print_json({"format": result["format"], **result["stats"], "reused": result["reused"]})


def merge(args: argparse.Namespace, _: None) -> None:
    from tinylm.flows.tuning import merge_flow

    print_json(merge_flow(args.run_id, args.workspace or "workspace"))


def refresh(args: argparse.Namespace, config: RefreshConfig) -> None:
    from tinylm.flows.refresh import refresh_flow

    print_json(refresh_flow(config))


def _sampling(args: argparse.Namespace):
    from tinylm.model.generation import Sampling

    return Sampling(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty
    )


def generate(args: argparse.Namespace, _: None) -> None:
    from tinylm.inference.generate import generate_text, load_model
    from tinylm.tracking.store import use_experiment

    use_experiment("tinylm", args.workspace or "workspace")
    loaded = load_model(args.checkpoint, args.workspace or "workspace", args.context)
    print(generate_text(loaded, args.prompt, args.max_new_tokens, _sampling(args), args.seed))


def chat(args: argparse.Namespace, _: None) -> None:
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


def export(args: argparse.Namespace, _: None) -> None:
    import tempfile

    from tinylm.export.gguf import export_gguf, gguf_name
    from tinylm.export.hf import export_hf
    from tinylm.export.model_registry import GGUF_ARTIFACT_PATH, HF_ARTIFACT_PATH, register_model
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
    print_json(result)


def evaluate(args: argparse.Namespace, config: EvalConfig) -> None:
    from tinylm.evaluation.leaderboard import leaderboard
    from tinylm.flows.evaluate import eval_flow

    result = eval_flow(args.model, config, args.workspace or "workspace")
    if args.table:
        print(leaderboard(result["benchmarks"]))
    else:
        print_json(result)


def serve(args: argparse.Namespace, settings: ServerSettings) -> None:
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
