"""The data half at scale: corpus, tokenizer and shards on 1, 4 and 16 times 100 MB of real text, from the command line.

    .venv/bin/python bench/scale.py [--mb 100] [--factors 1 4 16] [--quick] [--keep DIR]

Each size is a new corpus of real sample text: Zuozhuan lines (zh) and enwiki paragraphs
(en) recombined with the size's own seed into documents of a few KB, so no two documents
repeat and no size repeats another's; written as jsonl files of 50 MB. Each size runs the
three commands a user runs, `tinylm corpus` (extract, convert, filter, exact and MinHash
dedup against one persistent index that already holds the earlier sizes' corpora),
`tinylm tokenizer` (6400 tokens, 8 MB sample budget) and `tinylm shards`, each in its own
process, with `make servers` up for the workspace as a user processing gigabytes runs it
(so no command starts a temporary Prefect server). Per stage: wall time, MB/s of the raw
text, peak resident memory of the command's whole process tree (its workers included,
sampled every 0.1 s), of it the anonymous memory the work holds (the rest is memory-mapped
file pages, which the kernel reclaims), and time and memory against the first size. Targets: time linear
(16x the data within 18x the time), memory flat (within 1.5x). `--quick` runs 2 and 8 MB,
for CI-sized checks.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from _cli import bench_parser
from _corpus import DATA

from tinylm.config import ExtractConfig
from tinylm.corpus.readers import read_documents
from tinylm.stats import Stats

FILE_MB = 50
REPOSITORY = Path(__file__).resolve().parents[1]
STAGES = ("corpus", "tokenizer", "shards")


def source_pieces() -> tuple[list[str], list[str]]:
    lines = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if len(line) > 10]
    articles = read_documents(DATA / "enwiki-sample-pages-articles.xml.bz2", ExtractConfig(), Stats())
    paragraphs = [
        paragraph for article in articles for paragraph in article["text"].split("\n") if len(paragraph) > 200
    ]
    return lines, paragraphs


def write_corpus(
    directory: Path, megabytes: float, seed: int, pieces: tuple[list[str], list[str]], file_mb: float = FILE_MB
) -> list[Path]:
    """jsonl files of `file_mb` of recombined documents, `megabytes` of UTF-8 text in all."""
    rng = random.Random(seed)
    lines, paragraphs = pieces
    directory.mkdir(parents=True)
    files, written, budget = [], 0, int(megabytes * 1e6)
    while written < budget:
        path = directory / f"part-{len(files):03d}.jsonl"
        files.append(path)
        with path.open("w", encoding="utf-8") as handle:
            in_file = 0
            while in_file < min(file_mb * 1e6, budget - written):
                text = "\n".join(rng.sample(lines, 12)) if rng.random() < 0.5 else "\n".join(rng.sample(paragraphs, 4))
                handle.write(json.dumps({"id": f"{seed}-{written + in_file}", "text": text}, ensure_ascii=False) + "\n")
                in_file += len(text.encode("utf-8"))
        written += in_file
    return files


def tree_rss(pid: int) -> tuple[int, int]:
    """Resident and anonymous resident bytes of a process and every descendant, from /proc. Anonymous memory is what
    the work holds; the rest is file pages mapped in (memory-mapped ids and index tables), which the kernel reclaims."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    resident = anonymous = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{current}/status").read_text().splitlines() if ":" in line
            )
            resident += int(status["VmRSS"].split()[0]) * 1024
            anonymous += int(status["RssAnon"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pass
        pending.extend(children.get(current, []))
    return resident, anonymous


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def servers(root: Path, workspace: Path) -> Iterator[None]:
    """`make servers` for the workspace (its own Prefect home), stopped at the end; commands find them by the
    workspace."""
    make = ["make", "--no-print-directory", "-C", str(REPOSITORY), f"WORKSPACE={workspace}"]
    make += [f"PREFECT_PORT={free_port()}", f"MLFLOW_PORT={free_port()}"]
    environment = os.environ | {"PREFECT_HOME": str(root / "prefect-home")}
    subprocess.run([*make, "servers"], check=True, env=environment, capture_output=True)
    try:
        urls = json.loads((workspace / "servers" / "urls.json").read_text())
        for url in (f"{urls['prefect_api_url']}/health", f"{urls['mlflow_tracking_uri']}/health"):
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        yield
    finally:
        subprocess.run([*make, "stop"], env=environment, capture_output=True)


def run_command(arguments: list[str], cwd: Path | None = None) -> tuple[float, int, int]:
    """Wall seconds, peak resident and peak anonymous bytes (the whole process tree) of one tinylm command."""
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")
    }
    tinylm = str(Path(sys.executable).parent / "tinylm")
    seconds, peak, anonymous, _ = run_process([tinylm, *arguments], environment, cwd)
    return seconds, peak, anonymous


def run_process(
    command: list[str], environment: dict[str, str], cwd: Path | None = None
) -> tuple[float, int, int, str]:
    """Wall seconds, peak resident and peak anonymous bytes of a command's whole process tree (sampled every 0.1 s),
    and its standard output; a failure raises with the end of its output."""
    started, peak, anonymous = time.perf_counter(), 0, 0
    with tempfile.TemporaryFile() as log, tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=log, env=environment, cwd=cwd)
        while process.poll() is None:
            resident, held = tree_rss(process.pid)
            peak, anonymous = max(peak, resident), max(anonymous, held)
            time.sleep(0.1)
        output.seek(0)
        printed = output.read().decode(errors="replace")
        if process.returncode:
            log.seek(0)
            failure = log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{Path(command[0]).name} {command[1]} failed:\n{failure}")
    return time.perf_counter() - started, peak, anonymous, printed


def run_size(
    root: Path, workspace: Path, factor: int, megabytes: float, pieces: tuple, tokenizer_config: Path
) -> list[dict]:
    """One size through corpus (deduplicated against the shared index), tokenizer and shards: a row per stage."""
    size = f"x{factor}"
    raw = write_corpus(root / "raw" / size, megabytes, seed=factor, pieces=pieces)
    megabytes = sum(path.stat().st_size for path in raw) / 1e6
    corpus, tokenizer, shards = (root / stage / size for stage in ("corpus", "tokenizer", "shards"))
    commands = {
        "corpus": ["corpus", "--input", *map(str, raw), "--output", str(corpus), "--index", str(root / "dedup-index")],
        "tokenizer": [
            "tokenizer",
            "--corpus",
            str(corpus),
            "--output",
            str(tokenizer),
            "--config",
            str(tokenizer_config),
        ],
        "shards": ["shards", "--corpus", str(corpus), "--tokenizer", str(tokenizer), "--output", str(shards)],
    }
    rows = []
    for stage in STAGES:
        seconds, peak, anonymous = run_command([*commands[stage], "--workspace", str(workspace)])
        rows.append(
            {
                "factor": factor,
                "stage": stage,
                "mb": megabytes,
                "seconds": seconds,
                "peak": peak,
                "anonymous": anonymous,
            }
        )
        line = f"x{factor:<3d} {stage:9s} {megabytes:8.0f} MB {seconds:7.1f} s {megabytes / seconds:6.2f} MB/s"
        print(f"{line} peak {peak / 2**20:6.0f} MiB, anonymous {anonymous / 2**20:6.0f} MiB", flush=True)
    shutil.rmtree(root / "raw" / size)
    return rows


def table(rows: list[dict]) -> str:
    """The rows with each stage's ratios to its first size."""
    first = {}
    for row in rows:
        first.setdefault(row["stage"], row)
    header = f"{'size':6s} {'stage':9s} {'MB':>8s} {'s':>8s} {'MB/s':>7s} {'RSS MiB':>8s} {'anon MiB':>9s}"
    lines = [f"{header} {'time/1x':>8s} {'data/1x':>8s} {'RSS/1x':>8s} {'anon/1x':>8s}"]
    for row in rows:
        base = first[row["stage"]]
        ratios = [row[key] / base[key] for key in ("seconds", "mb", "peak", "anonymous")]
        lines.append(
            f"x{row['factor']:<5d} {row['stage']:9s} {row['mb']:8.0f} {row['seconds']:8.1f} "
            f"{row['mb'] / row['seconds']:7.2f} {row['peak'] / 2**20:8.0f} {row['anonymous'] / 2**20:9.0f} "
            + " ".join(f"{ratio:8.2f}" for ratio in ratios)
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Time and anonymous memory against data size per stage, with the targets: time proportional to the data
    (dotted, from each stage's first size) and memory within 1.5x of the first size (shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axes, memory_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage, color in zip(STAGES, ("tab:blue", "tab:orange", "tab:green")):
        stage_rows = [row for row in rows if row["stage"] == stage]
        sizes = [row["mb"] for row in stage_rows]
        first = stage_rows[0]
        time_axes.plot(sizes, [row["seconds"] for row in stage_rows], "o-", color=color, label=stage)
        time_axes.plot(sizes, [first["seconds"] * size / first["mb"] for size in sizes], ":", color=color)
        memory_axes.plot(sizes, [row["anonymous"] / 2**20 for row in stage_rows], "o-", color=color, label=stage)
        memory_axes.axhspan(first["anonymous"] / 2**20, 1.5 * first["anonymous"] / 2**20, color=color, alpha=0.08)
    time_axes.set(xscale="log", yscale="log", ylabel="wall seconds", title="time (dotted: linear from the first size)")
    memory_axes.set(xscale="log", ylabel="peak anonymous MiB", title="memory (shaded: within 1.5x of the first size)")
    memory_axes.set_ylim(bottom=0)
    sizes = sorted({row["mb"] for row in rows})
    time_axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    for axes in (time_axes, memory_axes):
        axes.set_xticks(sizes, [f"{size:.0f}" for size in sizes])
        axes.minorticks_off()
        axes.set_xlabel("raw text, MB")
        axes.legend()
        axes.grid(alpha=0.3)
    figure.suptitle(f"tinylm corpus, tokenizer and shards commands on {os.cpu_count()} CPUs ({platform.machine()})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def log_to_mlflow(workspace: Path, rows: list[dict], arguments: dict, files: list[Path]) -> str:
    """A run `scale` in the workspace's MLflow (experiment `bench`, in the model-training view as tinylm's own):
    each stage's figures as metrics with the size factor as the step, so MLflow draws the curves, and the table
    and plot as artifacts. Returns the run's page."""
    os.environ["MLFLOW_TRACKING_URI"] = json.loads((workspace / "servers" / "urls.json").read_text())[
        "mlflow_tracking_uri"
    ]
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    from tinylm.tracking.store import run_url, use_experiment

    with mlflow.start_run(experiment_id=use_experiment("bench", workspace), run_name="scale") as run:
        mlflow.log_params(arguments | {"cpus": os.cpu_count(), "machine": platform.machine()})
        for row in rows:
            metrics = {"seconds": row["seconds"], "mb_per_s": row["mb"] / row["seconds"]}
            metrics |= {"peak_rss_mib": row["peak"] / 2**20, "anonymous_mib": row["anonymous"] / 2**20}
            mlflow.log_metrics({f"{row['stage']}/{name}": value for name, value in metrics.items()}, step=row["factor"])
        for path in files:
            mlflow.log_artifact(str(path))
    return run_url(workspace, run.info.run_id) or ""


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--mb", type=float, default=100, help="megabytes of text at factor 1")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    parser.add_argument("--plot", type=Path, help="also save the plot here")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.factors = 2, [1, 4]
    root = args.keep or Path(tempfile.mkdtemp(prefix="tinylm-scale-"))
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    tokenizer_config = root / "tokenizer.yaml"
    tokenizer_config.write_text(yaml.safe_dump({"vocab_size": 6400, "max_text_bytes": 8_000_000}))
    pieces = source_pieces()
    rows = []
    try:
        with servers(root, workspace):
            for factor in args.factors:
                rows += run_size(root, workspace, factor, args.mb * factor, pieces, tokenizer_config)
            text = table(rows)
            print(f"\n{text}")
            (root / "scale.txt").write_text(text + "\n")
            (root / "scale.json").write_text(json.dumps(rows, indent=1))
            plot(rows, root / "scale.png")
            if args.plot:
                shutil.copyfile(root / "scale.png", args.plot)
            files = [root / name for name in ("scale.txt", "scale.json", "scale.png")]
            page = log_to_mlflow(workspace, rows, {"mb": args.mb, "factors": args.factors}, files)
            print(f"\nplot and table logged to MLflow: {page}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
