"""Every tinylm command in one list: the command line, the served deployments, prefect.yaml and the configuration
reference are all made from it, so a command cannot be on one surface and missing from another.

An entry names its settings model, its flow and its handler by import path (`"module:attribute"`), never by
object: reading the registry imports nothing heavy, `tinylm --help` stays instant, and a command's torch, MLflow or
Prefect load only when it runs.

A training method is the exception that proves the design: `register_method` in its (pydantic-only) config module is
all the command line, Prefect and the docs need; its flow is made from the registration (`tinylm/flows/tuning.py`),
and its `Method` class (the objective) lives in the module the registration names. The built-in methods register in
`tinylm/training/*_config.py`; a method from another package registers in a module named by the `tinylm.plugins`
entry point group or by `TINYLM_PLUGINS` (comma-separated module names or `path/to/file.py`), which every process,
torchrun's workers and the deployment server included, imports before reading the registry.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from tinylm.export.gguf_convert import GGUF_TYPES  # standard library only

PLUGINS_VARIABLE = "TINYLM_PLUGINS"
PLUGIN_GROUP = "tinylm.plugins"
# Where the built-in methods' config modules are: every `*_config.py` there registers its method when imported, so a
# new built-in method is its two modules and nothing to list.
METHOD_CONFIGS = Path(__file__).resolve().parent / "training"

# What every option naming a model takes (tinylm/weights/reference.py finds it).
MODEL_FORMS = (
    "an MLflow run id (its newest checkpoint), a run's or a step's checkpoint directory, an exported folder, "
    "or models:/NAME/VERSION"
)
CHECKPOINTS = "workspace of the checkpoints and the default MLflow store"
STORE = "workspace of the default MLflow store"
# The flags these settings had before they were derived from the configs, kept as aliases.
TRAINING_ALIASES: Mapping[str, str] = {"init_run_id": "--init", "resume_run_id": "--resume", "lora.rank": "--lora-rank"}


@dataclass(frozen=True)
class Input:
    """A command-line input besides the settings (a path, a run id, a switch). Its name without dashes is the
    flow's parameter of the same meaning."""

    flag: str
    help: str
    kind: Literal["path", "text", "int", "float", "switch"] = "path"
    many: bool = False
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def name(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class Command:
    """One `tinylm` command and, with a flow, the deployment of the same name.

    `handler` runs the command with its parsed arguments and settings; `config` is its settings model (flags,
    `--config` YAML, the deployment's form, a section of docs/config.md); `flow` is deployed under the command's
    name. `aliases` maps a dotted setting to an older flag, `exclude` drops settings no flag should set,
    `from_environment` reads settings from environment variables (secrets, which `ps` would show as flags).
    """

    name: str
    summary: str
    handler: str
    config: str | None = None
    flow: str | None = None
    inputs: tuple[Input, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    from_environment: Mapping[str, str] = field(default_factory=dict)
    workspace: str | None = None  # the --workspace help, for commands that work in one
    yaml: bool = True  # whether --config reads a YAML file of the settings
    runs_flows: bool = True  # False: a local command (no Prefect API started, its own errors)
    deployed: bool = True
    schedule: str | None = None  # the deployment's cron; TINYLM_<NAME>_CRON overrides it where it is served
    form: str | None = None  # "module:function" giving the deployment's pre-filled parameters
    # "module:function(settings)" run before any server starts, for what the model cannot check alone (a user's
    # quality rule that does not load): a refused setting answers in under a second, not after a Prefect start.
    check: str | None = None
    # A training method: the module of its `Method` class, and what it makes of its input before training
    # ("module:function(data, workspace, config) -> directory"; GRPO encodes its prompts) on every rank.
    method: str | None = None
    prepare: str | None = None

    def config_model(self) -> Any:
        """The settings model, imported now."""
        return load(self.config) if self.config else None

    @property
    def data(self) -> Input:
        """A training method's data: its first input."""
        return self.inputs[0]


_COMMANDS: dict[str, Command] = {}
_LOADED = False


def register(command: Command) -> Command:
    """Add a command; the same name twice is refused unless it is the same entry (a module imported twice)."""
    known = _COMMANDS.get(command.name)
    if known is not None and known != command:
        raise ValueError(f"the command {command.name} is registered twice: rename one")
    _COMMANDS[command.name] = command
    return command


def register_method(
    name: str,
    summary: str,
    config: str,
    method: str,
    data: Input,
    *,
    flow: str | None = None,
    prepare: str | None = None,
    aliases: Mapping[str, str] | None = None,
    exclude: tuple[str, ...] = (),
) -> Command:
    """A training method as a command, a flow and a deployment: `config` its settings model (a `TrainConfig`),
    `method` the module whose `@register`ed `Method` trains it, `data` the input it trains on. Its flow is
    `tinylm.flows.tuning:<name>_flow` unless `flow` names one of its own."""
    return register(
        Command(
            name=name,
            summary=summary,
            handler="tinylm.cli_handlers:train_method",
            config=config,
            flow=flow or f"tinylm.flows.tuning:{flow_attribute(name)}",
            inputs=(data,),
            aliases={**TRAINING_ALIASES, **(aliases or {})},
            exclude=exclude,
            workspace=CHECKPOINTS,
            method=method,
            prepare=prepare,
        )
    )


def flow_attribute(name: str) -> str:
    """The attribute a generated method flow has in tinylm/flows/tuning.py."""
    return f"{name.replace('-', '_')}_flow"


def commands() -> list[Command]:
    """Every command, built-in first, then the built-in methods, then the plugins', in the order registered."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for path in sorted(METHOD_CONFIGS.glob("*_config.py")):
            importlib.import_module(f"tinylm.training.{path.stem}")
        load_plugins()
    return list(_COMMANDS.values())


def command(name: str) -> Command:
    found = {entry.name: entry for entry in commands()}
    if name not in found:
        raise KeyError(f"no tinylm command is named {name}")
    return found[name]


def training_methods() -> list[Command]:
    return [entry for entry in commands() if entry.method]


def load(path: str) -> Any:
    """The object at "module:attribute" or "path/to/file.py:attribute", imported now."""
    module_name, _, attribute = path.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not module:attribute")
    return getattr(_import(module_name), attribute)


def load_plugins() -> None:
    """Import the plugin modules: the `tinylm.plugins` entry points of installed packages, then TINYLM_PLUGINS."""
    for point in entry_points(group=PLUGIN_GROUP):
        point.load()
    for name in filter(None, (part.strip() for part in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        _import(name)


def _import(name: str) -> Any:
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {name}")
    # One module per file, imported once: two files of one name stay apart.
    module_name = f"tinylm_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def _sampling_inputs() -> tuple[Input, ...]:
    return (
        CONTEXT,
        Input("--max-new-tokens", "tokens to generate at most", "int", required=False, default=128),
        Input("--temperature", "0 for greedy decoding", "float", required=False, default=0.8),
        Input("--top-k", "0 for no top-k filter", "int", required=False, default=50),
        Input("--top-p", "nucleus sampling; 1 for none", "float", required=False, default=0.95),
        Input("--repetition-penalty", "1 for none", "float", required=False, default=1.1),
        Input("--seed", "the sampler's seed", "int", required=False, default=0),
    )


CONTEXT = Input(
    "--context",
    "the context to read (default: the trained one); past the trained one, YaRN stretches the rotary positions by "
    "the ratio",
    "int",
    required=False,
    metavar="TOKENS",
)
INDEX = Input("--index", "persistent dedup index directory: dedup against it, then add to it", required=False)
TOKENIZER = Input("--tokenizer", "tokenizer directory")
HANDLERS = "tinylm.cli_handlers"

for _entry in (
    Command(
        "pipeline",
        "Run corpus, tokenizer, shards and train as one pipeline flow.",
        f"{HANDLERS}:pipeline",
        config="tinylm.config:PipelineConfig",
        flow="tinylm.flows.pipeline:pipeline_flow",
        inputs=(Input("--summary", "print where the outputs are and how to browse them", "switch", required=False),),
        aliases={"train.restart": "--restart"},
        form="tinylm.flows.deployments:pipeline_form",
        check=f"{HANDLERS}:check_corpus_rules",
    ),
    Command(
        "extract",
        "Extract raw files into Document parquet only, to inspect what a dump yields.",
        f"{HANDLERS}:extract",
        config="tinylm.config:ExtractConfig",
        flow="tinylm.flows.extract:extract_flow",
        inputs=(
            Input(
                "--input",
                "raw files: Wikipedia .xml[.bz2] (with its -index.txt.bz2 for parallel multistream), WuDao .json, "
                ".jsonl, .txt, .parquet; .gz/.bz2/.zst compressed",
                many=True,
            ),
            Input("--output", "directory for the Document parquet files"),
        ),
        deployed=False,
    ),
    Command(
        "corpus",
        "Extract, convert, filter and deduplicate raw files into Document parquet.",
        f"{HANDLERS}:corpus",
        config="tinylm.config:CorpusConfig",
        flow="tinylm.flows.corpus:corpus_flow",
        inputs=(
            Input("--input", "raw files: Wikipedia .xml[.bz2], .jsonl, .txt", many=True),
            Input("--output", "corpus directory to write"),
            INDEX,
        ),
        workspace=STORE,
        check=f"{HANDLERS}:check_corpus_rules",
    ),
    Command(
        "convert",
        "Convert a text file to simplified Chinese line by line, like `opencc`.",
        f"{HANDLERS}:convert",
        config="tinylm.config:ConvertConfig",
        inputs=(Input("--input", "UTF-8 text file"), Input("--output", "converted file (written atomically)")),
        aliases={"opencc_config": "--config"},  # as `opencc -c`
        yaml=False,
        runs_flows=False,
    ),
    Command(
        "dedup",
        "Run quality filters and exact + MinHash dedup alone on Document parquet.",
        f"{HANDLERS}:dedup",
        config="tinylm.config:CorpusConfig",
        flow="tinylm.flows.dedup:dedup_flow",
        inputs=(
            Input("--input", "directory of Document parquet (e.g. `tinylm extract` output)"),
            Input("--output", "corpus directory to write"),
            INDEX,
        ),
        workspace=STORE,
        deployed=False,
        check=f"{HANDLERS}:check_corpus_rules",
    ),
    Command(
        "tokenizer",
        "Train a byte-level BPE tokenizer on a corpus directory.",
        f"{HANDLERS}:tokenizer",
        config="tinylm.config:TokenizerConfig",
        flow="tinylm.flows.tokenizer:tokenizer_flow",
        inputs=(
            Input("--corpus", "corpus directory (output of `tinylm corpus`)"),
            Input("--output", "tokenizer directory to write"),
        ),
        workspace=STORE,
    ),
    Command(
        "shards",
        "Tokenize a corpus into fixed-size .bin token shards plus manifest.json.",
        f"{HANDLERS}:shards",
        config="tinylm.config:ShardsConfig",
        flow="tinylm.flows.shards:shards_flow",
        inputs=(Input("--corpus", "corpus directory"), TOKENIZER, Input("--output", "shard directory to write")),
        workspace=STORE,
    ),
    Command(
        "chat-data",
        "Tokenize SFT conversations or DPO pairs (jsonl) with the chat template into parquet.",
        f"{HANDLERS}:chat_data",
        config="tinylm.config:ChatDataConfig",
        flow="tinylm.flows.chat_data:chat_data_flow",
        inputs=(
            Input("--input", "jsonl files, .gz/.bz2/.zst compressed or not", many=True),
            TOKENIZER,
            Input("--output", "directory for the parquet parts and manifest.json"),
        ),
        workspace=STORE,
    ),
    Command(
        "train",
        "Pretrain a model shard by shard (or fine-tune, optionally LoRA), a checkpoint in MLflow after each shard.",
        "tinylm.cli_handlers:train_method",
        config="tinylm.config:TrainConfig",
        flow="tinylm.flows.train:train_flow",
        inputs=(Input("--shards", "shard directory (`tinylm shards`), or SFT data (`tinylm chat-data`)"),),
        aliases=TRAINING_ALIASES,
        workspace=CHECKPOINTS,
        method="tinylm.training.methods.pretrain",
    ),
    Command(
        "refresh",
        "Train on corpus files new to the inbox, continuing the newest training run.",
        f"{HANDLERS}:refresh",
        config="tinylm.config:RefreshConfig",
        flow="tinylm.flows.refresh:refresh_flow",
        schedule="0 3 * * *",
        form="tinylm.flows.deployments:refresh_form",
        check=f"{HANDLERS}:check_corpus_rules",
    ),
    Command(
        "generate",
        "Sample a continuation from a checkpoint.",
        f"{HANDLERS}:generate",
        inputs=(
            Input("--checkpoint", MODEL_FORMS, "text", metavar="MODEL"),
            Input("--prompt", "text to continue", "text"),
            *_sampling_inputs(),
        ),
        workspace=STORE,
        runs_flows=False,
    ),
    Command(
        "chat",
        "Chat with a checkpoint on stdin/stdout: multi-turn, streamed, with the chat template.",
        f"{HANDLERS}:chat",
        inputs=(
            Input("--checkpoint", MODEL_FORMS, "text", metavar="MODEL"),
            Input("--system", "system message that opens the conversation", "text", required=False),
            *_sampling_inputs(),
        ),
        workspace=STORE,
        runs_flows=False,
    ),
    Command(
        "export",
        "Export a checkpoint as a Hugging Face folder (Llama, or Mixtral/Granite-MoE for a mixture of experts) or as "
        "GGUF for llama.cpp and ollama, optionally registered in MLflow.",
        f"{HANDLERS}:export",
        inputs=(
            Input(
                "--checkpoint",
                "a tinylm checkpoint: an MLflow run id (its newest) or a run's or a step's checkpoint directory",
                "text",
                metavar="MODEL",
            ),
            Input(
                "--output",
                "folder to write: model.safetensors, config.json and the tokenizer; or model-QUANT.gguf and a "
                "Modelfile",
            ),
            Input("--format", "Hugging Face folder or GGUF file", "text", False, False, "hf", ("hf", "gguf")),
            CONTEXT,
            Input(
                "--dtype",
                "hf: the weights' dtype (default float32)",
                "text",
                required=False,
                choices=("float32", "bfloat16", "float16"),
            ),
            Input(
                "--quant",
                "gguf: llama.cpp's type for the weights (default q8_0)",
                "text",
                required=False,
                choices=GGUF_TYPES,
            ),
            Input(
                "--register",
                "log the folder to the run and register it as a new version of NAME (needs a run id)",
                "text",
                required=False,
                metavar="NAME",
            ),
        ),
        workspace=STORE,
        runs_flows=False,
    ),
    Command(
        "merge",
        "Fold a LoRA run's adapters into their base weights as a new run (for DPO, export, serving).",
        f"{HANDLERS}:merge",
        flow="tinylm.flows.tuning:merge_flow",
        inputs=(Input("--run-id", "the MLflow run that trained the adapters", "text"),),
        workspace=CHECKPOINTS,
    ),
    Command(
        "eval",
        "Measure a model: perplexity per source and language, benchmarks through lm-evaluation-harness.",
        f"{HANDLERS}:evaluate",
        config="tinylm.config:EvalConfig",
        flow="tinylm.flows.evaluate:eval_flow",
        inputs=(
            Input("--model", MODEL_FORMS, "text"),
            Input(
                "--table",
                "print the benchmark scores as a leaderboard table, not the results' JSON",
                "switch",
                required=False,
            ),
        ),
        aliases={"perplexity_data": "--data", "benchmarks": "--benchmark"},
        workspace=CHECKPOINTS,
    ),
    Command(
        "serve",
        "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions).",
        f"{HANDLERS}:serve",
        config="tinylm.inference.settings:ServerSettings",
        inputs=(
            Input("--model", MODEL_FORMS, "text"),
            CONTEXT,
            Input(
                "--host",
                "address to bind (127.0.0.1: this machine only; 0.0.0.0 to expose it)",
                "text",
                required=False,
                default="127.0.0.1",
            ),
            Input("--port", "port to listen on", "int", required=False, default=8000),
        ),
        aliases={"model_name": "--name", "request_timeout_s": "--request-timeout"},
        exclude=("api_key",),
        from_environment={"api_key": "TINYLM_API_KEY"},  # a secret: never the command line (ps shows it)
        workspace=STORE,
        runs_flows=False,
    ),
):
    register(_entry)
