"""Command-line flags derived from the config models, as litgpt and torchtitan derive theirs.

A config field is a flag, a Prefect form field and a row of docs/config.md at once: all three
read the model's JSON schema. `learning_rate` is `--learning-rate`, a nested model's field is
`--model.dim` or `--train.learning-rate`; the help is the field's description and the default
the model's. Flags override the YAML, and the result is validated by the model as a whole, so
a flag meets the field's bounds. A field no flag can spell (a dict, a list of models) is set in
the YAML.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from tinylm.config import read_yaml_settings

Config = TypeVar("Config", bound=BaseModel)
# Where a config flag's value lands in the parsed arguments: `config.<dotted field path>`.
DEST = "config."
_SCALARS: dict[str, type] = {"integer": int, "number": float, "string": str}


def add_config_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    aliases: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
) -> None:
    """A flag for every field of `model` a flag can spell but those in `exclude` (dotted paths); `aliases` maps a
    dotted path to the flag's older name."""
    aliases = aliases or {}
    schema = model.model_json_schema()
    group = parser.add_argument_group(f"settings ({model.__name__})")
    for path, field in _fields(schema, schema.get("$defs", {}), ()):
        dotted = ".".join(path)
        if dotted in exclude:
            continue
        names = [f"--{dotted.replace('_', '-')}", *([aliases[dotted]] if dotted in aliases else [])]
        group.add_argument(*names, dest=DEST + dotted, default=None, help=_help(field), **_kind(field))


def configured(model: type[Config], args: argparse.Namespace, **fixed: object) -> Config:
    """The command's config: the YAML of `--config` (or the defaults), then the flags given, then `fixed` (what the
    command's own options say), validated as a whole. Only an absent flag counts as absent (`--vocab-size 0` is 0)."""
    path: Path | None = getattr(args, "config", None)
    settings = read_yaml_settings(path) if path else {}
    given = {name: value for name, value in fixed.items() if value is not None}
    return model.model_validate(_merged(_merged(settings, flag_settings(args)), given))


def flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags given, as the nested settings they spell."""
    nested: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith(DEST) and value is not None:
            *parents, leaf = dest.removeprefix(DEST).split(".")
            node = nested
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
    return nested


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if nested else value
    return merged


def _fields(
    schema: dict[str, Any], defs: dict[str, Any], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(field path, schema) of every field under `schema` a flag can spell, nested models followed."""
    for name, field in schema.get("properties", {}).items():
        resolved = _resolved(field, defs)
        if "properties" in resolved:
            yield from _fields(resolved, defs, (*path, name))
        elif _kind(resolved):
            yield (*path, name), field | resolved


def _resolved(field: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The field's own schema: a `$ref` followed, an optional (`anyOf` with null) taken as its other branch."""
    options = [option for option in field.get("anyOf", [field]) if option.get("type") != "null"]
    if len(options) != 1:
        return {}
    option = options[0]
    return defs[option["$ref"].rsplit("/", 1)[-1]] if "$ref" in option else option


def _kind(field: dict[str, Any]) -> dict[str, Any]:
    """How argparse reads the field's value; empty when no flag can spell it."""
    if "enum" in field:
        return {"choices": field["enum"], "type": type(field["enum"][0])}
    kind = field.get("type")
    if kind == "boolean":
        return {"action": argparse.BooleanOptionalAction}
    if kind in _SCALARS:
        return {"type": _SCALARS[kind], "metavar": kind.upper()}
    items = field.get("items", {})
    if kind == "array" and items.get("type") in _SCALARS:
        return {"type": _SCALARS[items["type"]], "nargs": "+", "action": "extend", "metavar": items["type"].upper()}
    return {}


def _help(field: dict[str, Any]) -> str:
    description = field.get("description", "").replace("%", "%%")  # argparse formats help with %
    return f"{description} (default: {field['default']})" if "default" in field else description
