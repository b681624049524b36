"""The quality rules as a chain a user composes: the built-in rules reordered or left out, a rule of their own loaded
from a file with its own settings, each counted under its reason, and the rule's code part of the stage's fingerprint.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tinylm.config import QUALITY_RULES, ConvertConfig, ExtractConfig, FilterConfig
from tinylm.corpus.clean import clean_file
from tinylm.corpus.quality import BUILT_IN_RULES, quality_rules
from tinylm.corpus.readers import read_documents
from tinylm.corpus.rules import Judged
from tinylm.stats import Stats
from tinylm.storage.documents import make_document, read_batches, write_documents

PLUGINS = Path(__file__).parent / "plugins"
BANNER = "We use cookies to improve your experience. Accept all cookies?"


def test_the_config_names_the_built_in_rules_in_their_default_order():
    assert tuple(BUILT_IN_RULES) == QUALITY_RULES == tuple(FilterConfig().rules)
    reasons = [reason for kind in BUILT_IN_RULES.values() for reason in kind.reasons]
    assert len(reasons) == len(set(reasons)) == 9, "each reason belongs to one rule"
    assert {field for kind in BUILT_IN_RULES.values() for field in kind.fields} <= set(FilterConfig.model_fields)


def test_order_decides_the_reason_and_a_rule_left_out_drops_nothing():
    short_and_numeric = Judged("1234567 89", "en")
    default = quality_rules(FilterConfig()).judge([short_and_numeric])
    digits_first = quality_rules(FilterConfig(rules=["digits", "length"])).judge([short_and_numeric])
    assert default == ["too_short"] and digits_first == ["too_many_digits"]
    assert quality_rules(FilterConfig(rules=[])).judge([short_and_numeric]) == [None]


@pytest.fixture
def articles(enwiki_dump: Path, tmp_path: Path) -> Path:
    """Real enwiki articles, every third with a cookie banner appended, as Document parquet."""
    documents = list(read_documents(enwiki_dump, ExtractConfig(), Stats()))
    for index, document in enumerate(documents):
        if index % 3 == 0:
            document["text"] += "\n\n" + BANNER
    path = tmp_path / "articles.parquet"
    write_documents(path, [make_document("enwiki", n, d["text"], title=d["title"]) for n, d in enumerate(documents)])
    return path


def test_a_users_rule_from_a_file_drops_and_counts_under_its_reason(articles: Path, tmp_path: Path):
    rule = f"{PLUGINS / 'boilerplate_rule.py'}:Boilerplate"
    filters = FilterConfig(rules=[*QUALITY_RULES, rule], rule_settings={rule: {"phrases": ["accept all cookies"]}})
    plain = clean_file(articles, tmp_path / "plain", ConvertConfig(), FilterConfig())
    stats = clean_file(articles, tmp_path / "out", ConvertConfig(), filters)
    kept_texts = [text for batch in read_batches(Path(stats["output"]), 1024) for text in batch["text"].to_pylist()]
    assert stats["dropped"]["boilerplate"] > 0 and not any(BANNER in text for text in kept_texts)
    assert stats["kept"] + stats["dropped"]["boilerplate"] == plain["kept"], (
        "the rule runs after the built-in ones and drops only what they kept"
    )
    assert stats["output"] != plain["output"], "the rule is part of the fingerprint"


def test_an_edited_rule_file_re_runs_the_filters_rather_than_reuse_their_output(articles: Path, tmp_path: Path):
    copy = tmp_path / "my_rule.py"
    shutil.copy(PLUGINS / "boilerplate_rule.py", copy)
    rule = f"{copy}:Boilerplate"
    filters = FilterConfig(rules=[rule], rule_settings={rule: {"phrases": ["cookies"]}})
    first = clean_file(articles, tmp_path / "out", ConvertConfig(), filters)
    assert clean_file(articles, tmp_path / "out", ConvertConfig(), filters)["reused"]
    copy.write_text(copy.read_text().replace('"boilerplate" if any', '"boilerplate" if all'))
    edited = clean_file(articles, tmp_path / "out", ConvertConfig(), filters)
    assert not edited["reused"] and edited["output"] != first["output"]


def test_a_wrong_rule_or_setting_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ValidationError, match="rules: lenght is neither a built-in rule"):
        FilterConfig(rules=["lenght"])
    with pytest.raises(ValidationError, match="rule_settings: x:Y is not in rules"):
        FilterConfig(rule_settings={"x:Y": {}})
    with pytest.raises(ValueError, match="tinylm.corpus.rules.Rule subclass"):
        quality_rules(FilterConfig(rules=["tinylm.config:FilterConfig"]))
    with pytest.raises(ValueError, match="cannot load nowhere.py:Rule"):
        quality_rules(FilterConfig(rules=["nowhere.py:Rule"]))
    rule = f"{PLUGINS / 'boilerplate_rule.py'}:Boilerplate"
    with pytest.raises(ValueError, match=r"filters.rule_settings\[.*boilerplate_rule.py:Boilerplate'\]: phrases"):
        quality_rules(FilterConfig(rules=[rule]))


@pytest.mark.service  # a subprocess
def test_the_command_line_refuses_a_rule_that_does_not_load_before_it_reaches_for_prefect(tmp_path: Path):
    """The API named here does not answer: the one line comes from the settings check, which runs first."""
    command = [sys.executable, "-m", "tinylm.cli", "corpus", "--input", str(tmp_path / "x.txt"), "--output"]
    command += [str(tmp_path / "out"), "--filters.rules", "length", "nowhere.py:Rule"]
    environment = os.environ | {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    ran = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 1 and ran.stderr.strip().splitlines() == [
        "tinylm corpus: filters.rules: cannot load nowhere.py:Rule (no file nowhere.py); check the module path and "
        "class  (--debug shows the traceback)"
    ]
