"""The manual in docs/ says what the code does: pages generated from the code are regenerated, or this fails."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_config_reference_is_what_the_models_say():
    checked = subprocess.run([sys.executable, "scripts/config_reference.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_config_reference_names_every_field_of_every_config():
    from tinylm.config import PipelineConfig
    from tinylm.model.config import ModelConfig

    page = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    for name in [*PipelineConfig.model_fields, *ModelConfig.__dataclass_fields__]:
        assert f"| `{name}` |" in page, name
    assert "| `min_learning_rate` | float | `0.0001` | ≥ 0 |" in page, "defaults and bounds as the models hold them"
