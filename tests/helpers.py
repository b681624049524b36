"""Small builders shared by tests."""

import bz2
import html
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tinylm.config import ChatDataConfig, ShardsConfig, TrainConfig
from tinylm.flows.chat_data import chat_data_flow
from tinylm.flows.shards import shards_flow
from tinylm.model.config import ModelConfig
from tinylm.storage.documents import make_document

# The system's Chromium, which the browser tests drive (Debian's package; .ci/run installs it).
CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)


def tiny_train_config(**overrides: object) -> TrainConfig:
    """A model small enough that a few training steps take well under a second."""
    settings = dict(
        model=ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32),
        seq_len=32,
        batch_size=4,
        max_shards=3,
        max_steps_per_shard=6,
        warmup_steps=2,
        learning_rate=3e-3,
        log_every=1,
    )
    return TrainConfig(**(settings | overrides))


def make_shards(corpus: Path, tokenizer: Path, output: Path, config: ShardsConfig) -> dict:
    """The shards flow on paths (a test's Prefect API must be up: the `prefect_api` fixture)."""
    return shards_flow(str(corpus), str(tokenizer), str(output), config)


def make_chat_data(inputs: list[str], tokenizer: Path, output: Path, config: ChatDataConfig) -> dict:
    """The chat-data flow on paths (a test's Prefect API must be up: the `prefect_api` fixture)."""
    return chat_data_flow([str(path) for path in inputs], str(tokenizer), str(output), config)


def kill_when(
    code: str, half_written: Callable[[], bool], timeout: float = 300, env: dict[str, str] | None = None
) -> None:
    """Run `code` in a fresh interpreter, `env` added to its environment, and SIGKILL it as soon as `half_written()`
    holds.

    The deadline only ends a stage that never gets there; it is generous because a whole pipeline reaching its first
    checkpoint in a fresh interpreter, on a loaded CI machine, is minutes rather than seconds."""
    process = subprocess.Popen([sys.executable, "-c", code], env=os.environ | (env or {}))
    deadline = time.monotonic() + timeout
    while not half_written():
        assert process.poll() is None, "the stage finished before it could be killed; make the input bigger"
        assert time.monotonic() < deadline, "the stage never reached the point to kill it at"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def in_background(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """A long-lived process (a server, a worker) in its own session, so a test ends it and all it started with
    killpg."""
    return subprocess.Popen(
        command, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll `url` until it answers; fail early if the server process died."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, f"the server behind {url} exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
            time.sleep(0.3)


def start_mlflow_server(
    port: int, store: Path, artifacts: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A real `mlflow server` on 127.0.0.1:`port` with its database under `store`, artifacts there too or at
    `artifacts`."""
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts or str(store / "artifacts"),
            "--workers",  # one uvicorn worker starts in about two thirds of the time of the default four on 2 cores
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | (env or {}),
    )
    wait_for_http(f"http://127.0.0.1:{port}/health", process)
    return process


def write_lines(path: Path, lines: list[str]) -> None:
    """A jsonl corpus file, one {"text": line} per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": line}, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")


def write_wiki_dump(path: Path, pages: dict[str, str]) -> Path:
    """A bz2 pages-articles dump of articles (title to wikitext), ids from 1; the site comes from the file name."""
    body = "".join(
        f"  <page>\n    <title>{html.escape(title)}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>\n    <revision>\n"
        f'      <id>{page_id}</id>\n      <text xml:space="preserve">{html.escape(text)}</text>\n    </revision>\n  '
        "</page>\n"
        for page_id, (title, text) in enumerate(pages.items(), 1)
    )
    path.write_bytes(
        bz2.compress(f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">\n{body}</mediawiki>\n'.encode())
    )
    return path


def killed_and_run_again(data_dir: Path, workspace: Path, config: TrainConfig) -> tuple[dict, dict, dict, dict, dict]:
    """Train `config` once uninterrupted, and once killed with SIGKILL after its second checkpoint and run again
    with the same command: both results, both newest checkpoints' states, and the resumed one's metadata."""
    from tinylm.storage.checkpoints import load_checkpoint, newest_local_checkpoint
    from tinylm.training.trainer import train_model

    reference = train_model(data_dir, workspace, config.model_copy(update={"run_name": "reference"}))
    killed = config.model_copy(update={"run_name": "killed"})
    run_dir = workspace / "checkpoints"
    before = set(run_dir.iterdir())
    kind = type(killed)
    code = (
        f"from tinylm.training.trainer import train_model; from {kind.__module__} import {kind.__name__}; "
        f"train_model({str(data_dir)!r}, {str(workspace)!r}, "
        f"{kind.__name__}.model_validate_json({killed.model_dump_json()!r}))"
    )

    def second_checkpoint() -> bool:
        return any(len(list(path.glob("step-*/checkpoint.json"))) >= 2 for path in set(run_dir.iterdir()) - before)

    kill_when(code, second_checkpoint)
    resumed = train_model(data_dir, workspace, killed)
    expected, _ = load_checkpoint(newest_local_checkpoint(run_dir / reference["run_id"]))
    actual, meta = load_checkpoint(newest_local_checkpoint(run_dir / resumed["run_id"]))
    return reference, resumed, expected, actual, meta


def edited(text: str, fraction: float, seed: int) -> str:
    """Replace `fraction` of the characters at random positions, as a near-duplicate would."""
    rng = random.Random(seed)
    chars = list(text)
    for position in rng.sample(range(len(chars)), int(len(chars) * fraction)):
        chars[position] = rng.choice("的一是在不了有和人这中大为上个国")
    return "".join(chars)


def planted_near_duplicates(text_file: Path, originals: int, copies: int, seed: int) -> list[dict]:
    """Real Chinese lines of over 60 characters with `copies` planted among them at random places: a third exact
    copies, the rest edited in 1%, 3% or 20% of their characters (near duplicates, and one that is not)."""
    lines = [line for line in text_file.read_text(encoding="utf-8").splitlines() if len(line) > 60][:originals]
    rng = random.Random(seed)
    documents = [make_document("zz", f"line-{i}", line, lang="zh") for i, line in enumerate(lines)]
    for copy in range(copies):
        source = rng.randrange(len(lines))
        text = lines[source] if copy % 3 == 0 else edited(lines[source], rng.choice([0.01, 0.03, 0.2]), seed=copy)
        documents.insert(rng.randrange(len(documents) + 1), make_document("zz", f"copy-{copy:04d}", text, lang="zh"))
    return documents
