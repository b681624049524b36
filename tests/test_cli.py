import asyncio
import bz2
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import ArtifactSort
from pydantic import ValidationError

from tinylm.cli import build_parser, main, progress_bars
from tinylm.config import MIN_VOCAB_SIZE, TokenizerConfig
from tinylm.flows.report import PROGRESS_LISTENERS, StageProgress
from tinylm.storage.documents import make_document, write_documents
from tinylm.storage.manifest import content_hashes
from tinylm.tokens.tokenizer_files import BYTE_ALPHABET_SIZE, SPECIAL_TOKENS

COMMANDS = [
    "pipeline",
    "extract",
    "convert",
    "dedup",
    "corpus",
    "tokenizer",
    "shards",
    "chat-data",
    "train",
    "refresh",
    "generate",
    "chat",
    "export",
    "dpo",
    "grpo",
    "distill",
    "merge",
    "eval",
    "serve",
]


def test_the_whole_parser_imports_no_heavy_library():
    """Every command's flags are built from its config model, so any --help and any refused setting answer at
    once: the configs import pydantic and the standard library, never torch, mlflow, prefect or fastapi."""
    probe = (
        "import sys; from tinylm.cli import build_parser; build_parser(); "
        "print(' '.join(m for m in ('torch', 'mlflow', 'prefect', 'fastapi', 'math_verify') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""


def test_every_command_has_help_for_every_option():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    assert sorted(subparsers.choices) == sorted(COMMANDS)
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            if action.dest not in ("help",) and action.default is None and not action.required:
                assert action.help, f"{name} --{action.dest} has no help"


@pytest.mark.service
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


def test_extract_command_writes_documents_and_reports_counts(prefect_exported, table_dump, tmp_path, capsys):
    assert main(["extract", "--input", str(table_dump), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 5 and stats["units"] == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert pq.read_table(tmp_path / "out" / manifest["files"][0]).num_rows == 5


def test_convert_command_converts_han_characters_only(tmp_path, capsys):
    source = tmp_path / "in.txt"
    english = "Café “quotes” stay exactly as written.\n"
    source.write_text("臺灣的歷史與文化。\n" + english + "An English line with 漢字 in it.\n", encoding="utf-8")
    assert main(["convert", "--input", str(source), "--output", str(tmp_path / "out.txt")]) == 0
    expected = "台湾的历史与文化。\n" + english + "An English line with 汉字 in it.\n"
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == expected
    assert json.loads(capsys.readouterr().out) == {"lines": 3, "converted": 2, "converted_variant": {}}


def test_dedup_command_filters_and_deduplicates_documents(prefect_exported, zuozhuan, tmp_path, capsys):
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 100][:50]
    documents = [make_document("zz", i, text) for i, text in enumerate(lines + lines[:5] + ["短"])]
    write_documents(tmp_path / "docs" / "part-0.parquet", documents)
    arguments = [
        "dedup",
        "--input",
        str(tmp_path / "docs"),
        "--output",
        str(tmp_path / "corpus"),
        "--workspace",
        str(tmp_path),
    ]
    assert main(arguments) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["kept"] == 50 and stats["exact_duplicates"] == 5 and stats["filtered"] == {"too_short": 1}


def test_progress_reports_reach_the_listeners_and_the_prefect_artifact(prefect_api):
    heard = []
    PROGRESS_LISTENERS.append(lambda stage, done: heard.append((stage, done)))

    @flow
    def reporting() -> None:
        progress = StageProgress("demo", "steps")
        for done in (0.5, 1.0):
            progress(done)

    try:
        reporting()
    finally:
        PROGRESS_LISTENERS.pop()
    assert heard == [("demo", 0.5), ("demo", 1.0)]
    artifact = asyncio.run(_latest_artifact("demo-progress"))
    assert artifact.type == "progress" and artifact.data == 100.0


async def _latest_artifact(key: str):
    async with get_client() as client:
        return next(a for a in await client.read_artifacts(sort=ArtifactSort.CREATED_DESC) if a.key == key)


def test_the_command_line_listens_to_progress_while_a_command_runs():
    with progress_bars():
        assert len(PROGRESS_LISTENERS) == 1
        PROGRESS_LISTENERS[0]("train", 0.25)
    assert PROGRESS_LISTENERS == []


def cut_bz2(path, lines: int = 100_000):
    """A real bz2 jsonl file cut in half, as an interrupted download leaves it."""
    payload = bz2.compress(b"".join(b'{"text": "line %d of a corpus cut short"}\n' % i for i in range(lines)))
    path.write_bytes(payload[: len(payload) // 2])
    return path


def extract_command(source: Path, output: Path) -> list[str]:
    """`tinylm extract` as a user runs it, in a process of its own."""
    return [sys.executable, "-m", "tinylm.cli", "extract", "--input", str(source), "--output", str(output)]


def test_a_failing_command_prints_one_line_naming_the_file_and_debug_shows_the_traceback(prefect_api, tmp_path):
    source = cut_bz2(tmp_path / "cut.jsonl.bz2")
    command = extract_command(source, tmp_path / "out")
    environment = os.environ | {"PREFECT_API_URL": prefect_api}
    plain = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert plain.returncode == 1
    last = plain.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"tinylm extract: {source}: the compressed stream breaks off after")
        and "partial.parquet" in last
    )
    assert "Traceback" not in plain.stderr + plain.stdout
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=environment)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_numeric_flags_meet_the_configs_own_bounds_and_zero_is_not_absent(small_corpus, tmp_path, capsys):
    assert (
        main(["tokenizer", "--corpus", str(small_corpus), "--output", str(tmp_path / "tok"), "--vocab-size", "0"]) == 1
    )
    assert f"vocab_size: Input should be greater than or equal to {MIN_VOCAB_SIZE}" in capsys.readouterr().err
    assert MIN_VOCAB_SIZE == BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS), "the YAML bound is the tokenizer's real minimum"
    with pytest.raises(ValidationError):
        TokenizerConfig(vocab_size=MIN_VOCAB_SIZE - 1)


def test_a_directory_given_as_input_is_read_file_by_file(prefect_exported, constitution, table_dump, tmp_path, capsys):
    folder = tmp_path / "corpus"
    (folder / "wiki").mkdir(parents=True)
    shutil.copy(constitution, folder / "constitution.txt")
    shutil.copy(table_dump, folder / "wiki" / table_dump.name)
    (folder / "README.md").write_text("not a corpus file")
    (folder / ".hidden.txt").write_text("an editor's backup")
    assert main(["extract", "--input", str(folder), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["units"] == 2 and stats["documents"] > 5
    assert main(["extract", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out2")]) == 1
    assert f"tinylm extract: {tmp_path / 'nowhere'}: no such file or directory" in capsys.readouterr().err


def _without_prefect_api() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}


@pytest.mark.service
def test_a_temporary_prefect_server_that_does_not_start_is_tried_twice_then_one_readable_line(constitution, tmp_path):
    command = extract_command(constitution, tmp_path / "out")
    environment = _without_prefect_api() | {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0",
        "PREFECT_HOME": str(tmp_path / "home"),
    }
    failed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert failed.returncode == 1
    assert "trying once more" in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("tinylm extract: Prefect's temporary API server did not start within 0 s, twice")
        and "make servers" in last
    )
    assert "Traceback" not in failed.stderr


def test_a_command_on_a_temporary_server_prints_no_errors_and_uses_running_servers_when_there_are(
    prefect_api, constitution, tmp_path
):
    def extract_runs() -> int:
        return len(
            httpx.post(f"{prefect_api}/flow_runs/filter", json={"flows": {"name": {"any_": ["extract"]}}}).json()
        )

    workspace = tmp_path / "workspace"  # the default workspace, in the directory the command runs in
    command = extract_command(constitution, tmp_path / "out")
    before = extract_runs()
    alone = subprocess.run(
        command, capture_output=True, text=True, env=_without_prefect_api() | {"PREFECT_HOME": str(tmp_path / "home")}
    )
    assert alone.returncode == 0, alone.stderr
    noise = [
        line
        for line in alone.stderr.splitlines()
        if any(word in line for word in ("Traceback", "Error", "telemetry", "locked"))
    ]
    assert noise == [] and extract_runs() == before, "a temporary server of its own, and no error on the console"
    (workspace / "servers").mkdir(parents=True)
    urls = {"prefect_api_url": prefect_api, "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    (workspace / "servers" / "urls.json").write_text(json.dumps(urls))
    served = subprocess.run(
        [*command[:-1], str(tmp_path / "out2")], capture_output=True, text=True, env=_without_prefect_api()
    )
    assert served.returncode == 0, served.stderr
    assert extract_runs() == before + 1, "the command used the running server of urls.json"


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.service
def test_a_command_killed_with_sigkill_leaves_no_temporary_api_server_behind(constitution, tmp_path):
    command = extract_command(constitution, tmp_path / "out")
    process = subprocess.Popen(
        command, env=_without_prefect_api() | {"PREFECT_HOME": str(tmp_path / "home")}, stdout=subprocess.DEVNULL
    )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    while not (
        servers := [
            int(pid) for pid in children.read_text().split() if "uvicorn" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
    ):
        assert time.monotonic() < deadline, "no temporary API server was started"
        time.sleep(0.1)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while _alive(servers[0]):
        assert time.monotonic() < deadline, "the temporary API server outlived its killed command"
        time.sleep(0.2)
