"""Extraction at dump scale: a multistream dump of at least 1 GB, extracted by `tinylm extract` with 1 and 2 workers.

    .venv/bin/python bench/extract_scale.py [--gb 1] [--quick]

The dump is the real enwiki sample's pages repeated under fresh page ids until the bz2 file
reaches `--gb` GB, packed the way Wikimedia packs multistream dumps (100 pages per bz2
stream, the offset index beside it) by the tests' `write_multistream`, which is fed the
XML as a stream, so nothing here holds the dump. Each worker count runs `tinylm extract`
as a user runs it, in its own process with `make servers` up: wall seconds, MB/s of XML
and of bz2, pages/s, and the peak resident and anonymous memory of the whole process tree
(workers included). `--quick`: a 40 MB dump.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from scale import run_command, servers

from tinylm.config import ExtractConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for the tests' dump re-packer

from bench._cli import bench_parser  # noqa: E402
from bench.extract import SAMPLE, repeated_xml  # noqa: E402
from tests.multistream import write_multistream  # noqa: E402


def build_dump(sample: Path, gigabytes: float, directory: Path) -> tuple[Path, int, int]:
    """A multistream dump of at least `gigabytes` GB of bz2: (path, XML bytes, pages)."""
    probe = directory / "probe-multistream.xml.bz2"
    index = write_multistream(repeated_xml(sample, 2)[0], probe)  # type: ignore[arg-type]
    copies = math.ceil(gigabytes * 1e9 / (probe.stat().st_size / 2))
    probe.unlink()
    index.unlink()
    lines, size, pages = repeated_xml(sample, copies)
    dump = directory / "enwiki-scale-pages-articles-multistream.xml.bz2"
    write_multistream(lines, dump)  # type: ignore[arg-type]
    return dump, size, pages


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the bz2 dump")
    parser.add_argument(
        "--keep", type=Path, help="work here and keep the dump for the next run (default: a temporary directory)"
    )
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="tinylm-extract-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    gigabytes = 0.04 if args.quick else args.gb
    try:
        built = root / f"dump-{gigabytes}GB.json"
        if built.exists():
            dump, xml_bytes, pages = json.loads(built.read_text())
            dump = Path(dump)
        else:
            dump, xml_bytes, pages = build_dump(SAMPLE, gigabytes, root)
            built.write_text(json.dumps([str(dump), xml_bytes, pages]))
        size = dump.stat().st_size
        print(f"dump: {size / 1e9:.2f} GB bz2, {xml_bytes / 1e9:.2f} GB of XML, {pages} pages", flush=True)
        (root / "workspace").mkdir(exist_ok=True)
        config = root / "extract.yaml"  # at least 16 parallel units, the default 64 MB at 1 GB
        config.write_text(yaml.safe_dump({"range_bytes": min(ExtractConfig().range_bytes, size // 16)}))
        rows = []
        with servers(root, root / "workspace"):
            for workers in (1, 2):
                output = root / f"extract-{workers}"
                shutil.rmtree(output, ignore_errors=True)
                # `tinylm extract` keeps no MLflow runs, so it takes no --workspace: it finds the
                # servers from ./workspace
                command = [
                    "extract",
                    "--input",
                    str(dump),
                    "--output",
                    str(output),
                    "--workers",
                    str(workers),
                    "--config",
                    str(config),
                ]
                seconds, peak, anonymous = run_command(command, cwd=root)
                rows.append((workers, seconds, peak, anonymous))
                shutil.rmtree(output)
        print("\nworkers  seconds  XML MB/s  bz2 MB/s  pages/s  RSS MiB  anon MiB  speed-up")
        for workers, seconds, peak, anonymous in rows:
            print(
                f"{workers:7d} {seconds:8.1f} {xml_bytes / 1e6 / seconds:9.1f} {size / 1e6 / seconds:9.1f} "
                f"{pages / seconds:8.0f} {peak / 2**20:8.0f} {anonymous / 2**20:9.0f} {rows[0][1] / seconds:8.2f}x"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
