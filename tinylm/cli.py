"""`tinylm` command line, made from the registry (tinylm/registry.py): each command runs the matching Prefect flow,
so every run shows in Prefect; the handlers that run them are in cli_handlers.py."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tinylm.cli_flags import add_config_flags, configured
from tinylm.config import read_yaml_settings
from tinylm.registry import Command, Input, commands, load


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Every registered command (tinylm/registry.py); the config flags of `selected` alone when one is named (None:
    of every command), since a plugin's config module may cost what `tinylm extract` has no need to pay for."""
    parser = argparse.ArgumentParser(
        prog="tinylm",
        description="Raw Chinese and English corpora to a trained small language model. "
        "Each command runs a Prefect flow (ephemeral API unless PREFECT_API_URL is set) and tracks to "
        "MLflow (a SQLite store in the workspace unless MLFLOW_TRACKING_URI is set).",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in commands():
        _add_command(subcommands, entry, selected in (None, entry.name))
    return parser


def _add_command(subcommands: argparse._SubParsersAction, entry: Command, with_settings: bool) -> None:
    """The command's inputs, `--debug`, `--workspace` where it works in one, and with a config a flag for each of its
    settings (see cli_flags) and `--config` for its YAML. Its settings are built from both before anything starts (a
    Prefect server takes seconds), so a wrong value is refused at once; its handler then runs with them."""
    sub = subcommands.add_parser(entry.name, help=entry.summary, description=entry.summary)
    sub.add_argument("--debug", action="store_true", help="on failure, show the whole traceback instead of one line")
    if entry.workspace:
        sub.add_argument("--workspace", help=f"{entry.workspace} (default ./workspace)")
    for given in entry.inputs:
        _add_input(sub, given)
    settings: Settings = lambda _: None  # noqa: E731
    if entry.config is not None and with_settings:
        model = entry.config_model()
        if entry.yaml:
            sub.add_argument("--config", type=Path, help=f"{model.__name__} YAML; flags given override it")
        add_config_flags(sub, model, entry.aliases, entry.exclude)

        def settings(args: argparse.Namespace) -> BaseModel:
            environment = {name: os.environ.get(variable) or None for name, variable in entry.from_environment.items()}
            made = configured(model, args, **environment)
            if entry.check:
                load(entry.check)(made)
            return made

    elif entry.config is not None:
        sub.add_argument("--config", type=Path, help="the command's YAML config")
    sub.set_defaults(handler=entry.handler, settings=settings, runs_flows=entry.runs_flows)


def _add_input(sub: argparse.ArgumentParser, given: Input) -> None:
    if given.kind == "switch":
        sub.add_argument(given.flag, action="store_true", help=given.help)
        return
    kind = {"path": Path, "text": str, "int": int, "float": float}[given.kind]
    options: dict[str, Any] = {"type": kind, "help": given.help, "metavar": given.metavar, "choices": given.choices}
    if given.many:
        options["nargs"] = "+"
    if given.required:
        options["required"] = True
    else:
        options["default"] = given.default
    sub.add_argument(given.flag, **options)


# A command's settings from its parsed arguments (None for a command without a config).
Settings = Callable[[argparse.Namespace], BaseModel | None]


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
    runs_flows = args.runs_flows
    try:
        settings = args.settings(args)
        if runs_flows:
            use_running_servers(workspace_of(args))
            ensure_prefect_api(args.command, startup_timeout())
            if not args.debug:
                from tinylm.flows.session.console import quiet_prefect_tracebacks

                quiet_prefect_tracebacks()
        with progress_bars():
            load(args.handler)(args, settings)
    except Exception as error:
        if args.debug:
            raise
        print(f"tinylm {args.command}: {one_line(error)}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
