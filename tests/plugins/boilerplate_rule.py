"""A user's quality rule, loaded by `filters.rules: [..., "tests/plugins/boilerplate_rule.py:Boilerplate"]`: it drops
documents that carry any of the phrases its settings list (cookie banners, placeholder text)."""

from pydantic import BaseModel, Field

from tinylm.corpus.rules import Judged, Rule


class BoilerplateSettings(BaseModel):
    phrases: list[str] = Field(min_length=1, description="phrases whose presence marks boilerplate, any case")


class Boilerplate(Rule):
    reasons = ("boilerplate",)
    Settings = BoilerplateSettings

    def failure(self, document: Judged) -> str | None:
        text = document.text.lower()
        return "boilerplate" if any(phrase.lower() in text for phrase in self.settings.phrases) else None
