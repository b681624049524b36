"""WuDao JSON-array reading: tinylm's streaming scanner against `ijson` on the same file, in one run.

    .venv/bin/python bench/json_array.py

A WuDao-shaped array (id, uniqueKey, titleUkey, dataType, title, content) of real
Zuozhuan text, recombined with a seed: the reference is ijson's fastest backend
(`yajl2_c`) yielding the same records. This is why the reader keeps its own scanner
(see `tinylm/corpus/readers/wudao.py`): ijson is slower here, and it cannot skip a
damaged record and carry on.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import ijson
from _cli import bench_parser
from _timing import best_of

from tinylm.corpus.readers.wudao import iter_json_array
from tinylm.stats import Stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECORDS = 20_000


def write_array(path: Path, records: int) -> int:
    lines = [line for line in (DATA / "zuozhuan-zhs.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(0)
    records = [
        {
            "id": i,
            "uniqueKey": f"k{i}",
            "titleUkey": f"t{i}",
            "dataType": "典籍",
            "title": lines[i % len(lines)][:20],
            "content": "".join(rng.sample(lines, 8)),
        }
        for i in range(records)
    ]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path.stat().st_size


def count(path: Path, records) -> int:
    with open(path, "rb") as stream:
        return sum(1 for _ in records(stream))


def main() -> None:
    quick = bench_parser(__doc__).parse_args().quick
    records, rounds = (RECORDS // 10, 1) if quick else (RECORDS, 3)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "wudao.json"
        size = write_array(path, records)
        assert (
            count(path, lambda s: iter_json_array(s, Stats()))
            == count(path, lambda s: ijson.items(s, "item"))
            == records
        )
        ours = best_of(rounds, lambda: count(path, lambda s: iter_json_array(s, Stats())))
        reference = best_of(rounds, lambda: count(path, lambda s: ijson.items(s, "item", use_float=True)))
    print(f"ijson backend {ijson.backend}, {size / 1e6:.1f} MB, {records} records")
    print("reader        MB/s")
    print(f"ijson    {size / 1e6 / reference:9.1f}")
    print(f"tinylm   {size / 1e6 / ours:9.1f}   ({reference / ours:.2f}x ijson's throughput)")


if __name__ == "__main__":
    main()
