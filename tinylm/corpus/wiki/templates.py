"""Templates whose output is prose, and what of each one extraction keeps.

A dump holds template calls, not what they expand to. Expanding them takes every
template's source and MediaWiki's Lua modules; most templates in an article are
infrastructure (citations, infoboxes, banners) that rightly vanish with them. A few carry
the sentence's own words, though: `QUIC的{{link-en|网络草案|Internet Draft}}被正式提交`,
`{{lang-en|Yahoo! UI Library}}`, `{{convert|50|ft|m}}`. For those a table says which
arguments are shown. The table is data (`prose_templates.toml`) that a run's config
extends, because every wiki has its own templates and names for them.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import TypeAdapter

from tinylm.config import TemplateAlternative, TemplateRule

BUILT_IN_TABLE = Path(__file__).with_name("prose_templates.toml")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_ARGUMENT_TOKEN = re.compile(r"\{\{|\}\}|\[\[|\]\]|\||=")
_NESTING = {"{{": 1, "[[": 1, "}}": -1, "]]": -1}
_NAMESPACE = re.compile(r"^(?:template|模板)\s*[:：]\s*")
_RULES = TypeAdapter(dict[str, TemplateRule])
_ALIASES = TypeAdapter(dict[str, str])


@dataclass(frozen=True)
class Alternative:
    """One way a template shows its text: `show` with each `{field}` filled in, when `when` holds."""

    show: str
    fields: tuple[str, ...]
    when: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, rule: str | TemplateAlternative) -> Alternative:
        if isinstance(rule, str):
            rule = TemplateAlternative(show=rule)
        when = tuple((key, frozenset(word.lower() for word in words)) for key, words in rule.when.items())
        return cls(rule.show, tuple(_PLACEHOLDER.findall(rule.show)), when)

    def render(self, arguments: Mapping[str, str], expand: Callable[[str], str]) -> str | None:
        """The shown text, or None when an argument it needs is missing or a condition fails."""
        if any(arguments.get(key, "").strip().lower() not in words for key, words in self.when):
            return None
        values = {}
        for field in self.fields:
            value = expand(arguments.get(field, "")).strip()
            if not value:
                return None
            values[field] = value
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], self.show)


def normalize_name(name: str) -> str:
    """A template's name as MediaWiki compares them: no namespace, `_` as space, case folded."""
    return _NAMESPACE.sub("", " ".join(name.replace("_", " ").split()).lower())


class TemplateTable:
    """Kept templates by name (exact names first, then `prefix*` patterns, longest first) and their aliases."""

    def __init__(self, rules: Mapping[str, TemplateRule], aliases: Mapping[str, str]) -> None:
        self._exact: dict[str, tuple[Alternative, ...]] = {}
        prefixes: dict[str, tuple[Alternative, ...]] = {}
        for name, rule in rules.items():
            alternatives = tuple(Alternative.parse(item) for item in ([rule] if isinstance(rule, str) else rule))
            key = normalize_name(name)
            if key.endswith("*"):
                prefixes[key[:-1]] = alternatives
            else:
                self._exact[key] = alternatives
        self._prefixes = sorted(prefixes.items(), key=lambda item: -len(item[0]))
        self._aliases = {normalize_name(alias): normalize_name(name) for alias, name in aliases.items()}

    def alternatives(self, name: str) -> tuple[Alternative, ...]:
        """How a template of this name shows its text; empty for a template that is dropped."""
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key in self._exact:
            return self._exact[key]
        return next((alternatives for prefix, alternatives in self._prefixes if key.startswith(prefix)), ())

    def render(self, call: str, expand: Callable[[str], str]) -> str:
        """The visible text of one template call `{{name|...}}`; `expand` cleans an argument (it may hold templates)."""
        inner = call[2:-2]
        bar = inner.find("|")
        alternatives = self.alternatives(inner if bar < 0 else inner[:bar])
        if not alternatives:
            return ""
        arguments = split_arguments(inner)
        for alternative in alternatives:
            shown = alternative.render(arguments, expand)
            if shown is not None:
                return shown
        return ""


def outside_nesting(text: str, tokens: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """The matches of `tokens` outside nested links and templates; `tokens` must match `{{`, `}}`, `[[` and `]]` too,
    so the depth can be followed (an unmatched closer is ignored, as MediaWiki ignores it)."""
    depth = 0
    for token in tokens.finditer(text):
        step = _NESTING.get(token.group())
        if step is not None:
            depth = max(0, depth + step)
        elif depth == 0:
            yield token


def split_arguments(inner: str) -> dict[str, str]:
    """A template call's arguments, numbered from 1 or by name, split at the bars outside nested links and templates.

    As in MediaWiki, `name=value` names an argument only when the `=` is outside nested markup,
    and `1=value` sets the first unnamed one.
    """
    parts: list[tuple[str, int]] = []
    start = 0
    equals = -1
    for token in outside_nesting(inner, _ARGUMENT_TOKEN):
        if token.group() == "=" and equals < 0:
            equals = token.start() - start
        elif token.group() == "|":
            parts.append((inner[start : token.start()], equals))
            start, equals = token.end(), -1
    parts.append((inner[start:], equals))
    arguments: dict[str, str] = {}
    position = 0
    for text, equals in parts[1:]:
        if equals >= 0:
            arguments[text[:equals].strip()] = text[equals + 1 :]
        else:
            position += 1
            arguments[str(position)] = text
    return arguments


@lru_cache(maxsize=1)
def _built_in() -> tuple[dict[str, TemplateRule], dict[str, str]]:
    table = tomllib.loads(BUILT_IN_TABLE.read_text(encoding="utf-8"))
    return _RULES.validate_python(table.get("templates", {})), _ALIASES.validate_python(table.get("aliases", {}))


@lru_cache(maxsize=8)
def _table(extra: str) -> TemplateTable:
    rules, aliases = _built_in()
    extra_rules, extra_aliases = json.loads(extra)
    return TemplateTable(rules | _RULES.validate_python(extra_rules), aliases | extra_aliases)


def template_table(
    templates: Mapping[str, TemplateRule] | None = None, aliases: Mapping[str, str] | None = None
) -> TemplateTable:
    """The built-in table with a run's own templates and aliases over it (built once per distinct config)."""
    extra = _RULES.dump_python(dict(templates or {}), mode="json"), dict(aliases or {})
    return _table(json.dumps(extra, sort_keys=True, ensure_ascii=False))
