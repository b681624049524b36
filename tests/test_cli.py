import json
import subprocess
import sys

import pyarrow.parquet as pq

import pytest

from tinylm.cli import build_parser, main
from tinylm.storage.manifest import content_hashes

COMMANDS = ["pipeline", "extract", "corpus", "tokenizer", "shards", "train", "generate"]


def test_every_command_has_help_for_every_option():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    assert sorted(subparsers.choices) == sorted(COMMANDS)
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if action.dest not in ("help",) and action.default is None and not action.required:
                assert action.help, f"{name} --{action.dest} has no help"


@pytest.mark.parametrize("command", COMMANDS)
def test_console_script_prints_help(command):
    output = subprocess.run(
        [sys.executable, "-m", "tinylm.cli", command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert output.startswith(f"usage: tinylm {command}")


def test_missing_input_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        content_hashes([str(missing)])


def test_extract_command_writes_documents_and_reports_counts(prefect_api, table_dump, tmp_path, capsys):
    assert main(["extract", "--input", str(table_dump), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 5 and stats["units"] == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert pq.read_table(tmp_path / "out" / manifest["files"][0]).num_rows == 5
