"""A user's quality rule, loaded by `filters.rules: [..., "tests/plugins/boilerplate_rule.py:Boilerplate"]`: it drops
documents that carry any of the phrases its settings list (cookie banners, placeholder text)."""

from collections.abc import Sequence

from pydantic import BaseModel, Field

from tinylm.corpus.rules import Judged, Rule


class BoilerplateSettings(BaseModel):
    phrases: list[str] = Field(min_length=1, description="phrases whose presence marks boilerplate, any case")


class Boilerplate(Rule):
    reasons = ("boilerplate",)
    Settings = BoilerplateSettings

    def failures(self, documents: Sequence[Judged]) -> list[str | None]:
        phrases = [phrase.lower() for phrase in self.settings.phrases]
        return ["boilerplate" if any(p in d.text.lower() for p in phrases) else None for d in documents]
