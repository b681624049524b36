"""The manual in docs/ says what the code does: pages generated from the code are regenerated, or this fails."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.service
def test_the_config_reference_is_what_the_models_say():
    checked = subprocess.run(
        [sys.executable, "scripts/config_reference.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_the_config_reference_names_every_field_of_every_config():
    from tinylm.config import PipelineConfig
    from tinylm.model.config import ModelConfig

    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    for name in [*PipelineConfig.model_fields, *ModelConfig.__dataclass_fields__]:
        assert f"| `{name}` |" in page, name
    assert "| `min_learning_rate` | float | `0.0001` | ≥ 0 |" in page, "defaults and bounds as the models hold them"


def _links(page: Path) -> list[tuple[str, str]]:
    """(target, anchor) of each relative markdown link on the page."""
    found = re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
    return [tuple((link.split("#", 1) + [""])[:2]) for link in found if not link.startswith(("http://", "https://"))]


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lowercased, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_readme_and_the_manual_leads_somewhere():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in _links(page):
            path = (page.parent / target).resolve() if target else page
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken


def test_readme_is_a_front_page_that_leads_to_every_page_of_the_manual():
    readme = ROOT / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= 250, "the manual belongs in docs/"
    linked = {(readme.parent / target).resolve() for target, _ in _links(readme)}
    assert not [page.name for page in (ROOT / "docs").glob("*.md") if page.resolve() not in linked]
