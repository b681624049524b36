"""Quality rules as objects in an ordered chain: each owns the settings it reads and the reasons it counts, and judges
a batch of documents at once; a document is dropped by the first rule it breaks, and that rule's reason becomes its
counter (`filtered.<reason>` in the manifest, the artifact and the MLflow run).

`filters.rules` is the chain's order: the built-in rules' names (quality.py) and user rules, `package.module:Class` or
`path/to/file.py:Class` (as GRPO's rewards are named). A user rule is a `Rule` subclass; its settings, a pydantic
model in its `Settings` attribute, come from `filters.rule_settings[<the name in filters.rules>]`, and its source file
is part of the stage's fingerprint, so editing the rule re-runs the filters rather than reusing their output.

The batch is why the chain is fast: a rule's `failures` (by default its `failure` of each document) gets the documents
still standing, so later (costlier) rules
see fewer, and the views several rules share (a document's words, its non-empty lines) are computed once per document
(`Judged`), whatever the order.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from tinylm.config import FilterConfig
from tinylm.corpus.language import written_in_characters
from tinylm.registry import load

_WORD = re.compile(r"\w+")


class Judged:
    """A document as the rules see it: its text and language, and the views rules share, each computed once."""

    __slots__ = ("__dict__", "lang", "text")

    def __init__(self, text: str, lang: str | None) -> None:
        self.text, self.lang = text, lang

    @cached_property
    def chinese(self) -> bool:
        """Written in characters, not words (Chinese, Japanese): rules that count words count characters."""
        return written_in_characters(self.lang)

    @cached_property
    def words(self) -> list[str]:
        """Lower-cased words (`\\w+`); empty for a text written in characters."""
        return [] if self.chinese else _WORD.findall(self.text.lower())

    @cached_property
    def lines(self) -> list[str]:
        """The non-empty lines, stripped."""
        return [line for line in (line.strip() for line in self.text.splitlines()) if line]


class Rule:
    """One quality rule. `reasons` names every reason it may give (its counters); `Settings` is a user rule's settings
    model (a built-in rule reads its fields of FilterConfig, named in `fields`, so the YAML stays flat).

    A rule judges one document in `failure`; one that is faster over a whole batch (a model scoring many texts at
    once) overrides `failures` instead."""

    reasons: ClassVar[tuple[str, ...]]
    fields: ClassVar[tuple[str, ...]] = ()
    Settings: ClassVar[type[BaseModel] | None] = None

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def failure(self, document: Judged) -> str | None:
        """The reason `document` breaks this rule (one of `reasons`), or None when it passes."""
        raise NotImplementedError(f"{type(self).__name__} defines neither failure nor failures")

    def failures(self, documents: Sequence[Judged]) -> list[str | None]:
        """For each document, the reason it breaks this rule, or None."""
        return [self.failure(document) for document in documents]

    @classmethod
    def judges(cls) -> bool:
        """Whether the class says how it judges: `failure` or `failures` of its own."""
        return cls.failure is not Rule.failure or cls.failures is not Rule.failures


class RuleChain:
    """The rules of a FilterConfig, in its order, built once per configuration (a source's preset makes its own)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)

    def judge(self, documents: Sequence[Judged]) -> list[str | None]:
        """Each document's reason to be dropped (the first rule it breaks), or None to keep it."""
        reasons: list[str | None] = [None] * len(documents)
        standing = list(range(len(documents)))
        for rule in self.rules:
            if not standing:
                break
            found = rule.failures([documents[index] for index in standing])
            for index, reason in zip(standing, found, strict=True):
                if reason is not None and reason not in rule.reasons:
                    raise ValueError(
                        f"rule {type(rule).__name__} gave {reason!r}, not one of its reasons {rule.reasons}"
                    )
                reasons[index] = reason
            standing = [index for index, reason in zip(standing, found) if reason is None]
        return reasons


def rule_chain(filters: FilterConfig, built_in: Mapping[str, type[Rule]]) -> RuleChain:
    """The chain `filters.rules` names: built-in rules by name, user rules by `module:Class` or `file.py:Class`."""
    return RuleChain([_rule(name, filters, built_in) for name in filters.rules])


def rule_sources(filters: FilterConfig, built_in: Mapping[str, type[Rule]]) -> list[str]:
    """The source files of the user rules `filters` names: part of the stage's fingerprint."""
    return [inspect.getfile(_rule_class(name, built_in)) for name in filters.rules if name not in built_in]


def _rule(name: str, filters: FilterConfig, built_in: Mapping[str, type[Rule]]) -> Rule:
    kind = _rule_class(name, built_in)
    if kind.Settings is None:
        return kind(filters)
    try:
        return kind(kind.Settings.model_validate(filters.rule_settings.get(name, {})))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"filters.rule_settings[{name!r}]: {problems}") from None


def _rule_class(name: str, built_in: Mapping[str, type[Rule]]) -> type[Rule]:
    if name in built_in:
        return built_in[name]
    if ":" not in name:
        raise ValueError(f"filters.rules: {name!r} is neither a built-in rule ({', '.join(built_in)}) nor module:Class")
    try:
        kind = load(name)
    except (ImportError, FileNotFoundError, AttributeError) as error:
        raise ValueError(f"filters.rules: cannot load {name} ({error}); check the module path and class") from None
    if not (isinstance(kind, type) and issubclass(kind, Rule) and kind.judges()):
        raise ValueError(f"filters.rules: {name} is not a tinylm.corpus.rules.Rule subclass with `failure`")
    return kind
