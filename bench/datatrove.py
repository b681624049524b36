"""tinylm's corpus stage against datatrove's equivalent pipeline on the same files, on one host and on local Ray.

    .venv/bin/python bench/datatrove.py [--mb 50] [--quick]

The text: Zuozhuan lines (zh) and enwiki paragraphs (en) recombined into documents of a
few KB (bench/scale.py's corpus), written as jsonl files of 10 MB. tinylm: `tinylm corpus`
(read, t2s conversion, language ID, quality filters, exact and MinHash dedup) with
`make servers` up, on threads and process pools (extract.workers 2), then with
`runner.kind: ray` (a local Ray cluster of two workers; dedup spread in stages). datatrove
0.10.1 (its own environment, .venv-datatrove): JsonlReader, GopherRepetitionFilter,
GopherQualityFilter and JsonlWriter, then its four MinHash stages (signatures, buckets,
cluster, filter), on its LocalPipelineExecutor with two workers, then on its
RayPipelineExecutor over a local Ray cluster of two CPUs. Each run in its own process
tree: wall time, MB/s of the raw text, peak resident and anonymous memory of the whole tree
(workers included), documents kept. A datatrove stage that fails is reported with its
error, and the ratio is then over the stages that finished.

datatrove's English Gopher rules drop the Chinese half of the documents (no spaces, so too
few words), so its MinHash stages see half the text tinylm's do; tinylm also converts and
identifies languages, which datatrove's pipeline does not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from _cli import bench_parser
from scale import REPOSITORY, run_command, run_process, servers, source_pieces, write_corpus

DATATROVE = REPOSITORY / ".venv-datatrove" / "bin" / "python"


def tinylm_run(root: Path, workspace: Path, files: list[Path], runner: str) -> dict:
    output, config = root / f"tinylm-{runner}", root / f"corpus-{runner}.yaml"
    config.write_text(yaml.safe_dump({"runner": {"kind": runner}, "extract": {"workers": 2}}))
    arguments = ["corpus", "--input", *map(str, files), "--output", str(output), "--config", str(config)]
    seconds, peak, anonymous = run_command([*arguments, "--workspace", str(workspace)])
    manifest = json.loads((output / "manifest.json").read_text())
    return {"seconds": seconds, "peak": peak, "anonymous": anonymous, "kept": manifest["stats"]["kept"], "failed": ""}


def datatrove_run(root: Path, raw: Path, executor: str) -> dict:
    work = root / f"datatrove-{executor}"
    # -P: the script's folder stays off the import path, where this file would shadow the datatrove package.
    command = [str(DATATROVE), "-P", str(REPOSITORY / "bench" / "_datatrove_pipeline.py"), str(raw), str(work)]
    try:
        seconds, peak, anonymous, printed = run_process([*command, "--executor", executor], dict(os.environ))
    except RuntimeError as error:
        last = [line for line in str(error).splitlines() if line.strip()][-1]
        return {"seconds": float("nan"), "peak": 0, "anonymous": 0, "kept": 0, "failed": last[:100]}
    result = json.loads(printed.strip().splitlines()[-1])
    return {"seconds": seconds, "peak": peak, "anonymous": anonymous, "kept": result["kept"], "failed": ""} | {
        "stages": result["seconds"],
        "after_filters": result["after_filters"],
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--mb", type=float, default=50, help="megabytes of raw text")
    args = parser.parse_args()
    if not DATATROVE.exists():
        raise SystemExit("datatrove's environment is missing: make .venv-datatrove/.installed")
    megabytes = 4 if args.quick else args.mb
    root = Path(tempfile.mkdtemp(prefix="tinylm-datatrove-"))
    try:
        raw = root / "raw"
        files = write_corpus(raw, megabytes, seed=1, pieces=source_pieces(), file_mb=min(10, megabytes / 2))
        size = sum(path.stat().st_size for path in files) / 1e6
        workspace = root / "workspace"
        workspace.mkdir()
        rows = {}
        with servers(root, workspace):
            for runner in ("threads", "ray"):
                rows[("tinylm", runner)] = tinylm_run(root, workspace, files, runner)
        for executor in ("local", "ray"):
            rows[("datatrove", executor)] = datatrove_run(root, raw, executor)
        print(f"{size:.0f} MB of raw text in {len(files)} jsonl files, {os.cpu_count()} CPUs\n")
        print(f"{'tool':10} {'where':8} {'s':>7} {'MB/s':>6} {'RSS MiB':>8} {'anon MiB':>9} {'kept':>7}")
        for (tool, where), row in rows.items():
            line = f"{tool:10} {where:8} {row['seconds']:7.1f} {size / row['seconds']:6.2f} "
            line += f"{row['peak'] / 2**20:8.0f} {row['anonymous'] / 2**20:9.0f} {row['kept']:7d}"
            print(line + (f"  failed: {row['failed']}" if row["failed"] else ""))
        for (_, where), row in rows.items():
            if "stages" in row:
                stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in row["stages"].items())
                print(f"\ndatatrove on {where}: {stages}; {row['after_filters']} documents after its filters")
        for ours, theirs in (("threads", "local"), ("ray", "ray")):
            tinylm, datatrove = rows[("tinylm", ours)], rows[("datatrove", theirs)]
            if not datatrove["failed"]:
                speed = datatrove["seconds"] / tinylm["seconds"]
                memory = tinylm["peak"] / datatrove["peak"]
                versus = f"tinylm on {ours} against datatrove on {theirs}"
                print(f"{versus}: {speed:.2f}x the speed, {memory:.2f}x the peak RSS")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
