"""Extraction benchmark: tinylm against wikiextractor on the same dump, in one run.

    .venv/bin/python bench/extract.py [--copies 16]

Builds a larger dump by repeating the real enwiki sample's pages under fresh page ids,
then prints, side by side:
  * single-worker throughput (MB/s of uncompressed XML, pages/s) of wikiextractor
    (`--processes 1`) and tinylm, each run as its own process on the same file;
  * tinylm's scaling from 1 to 2 workers on the same dump re-packed as multistream,
    through the real extract flow (16 units, about 8 per worker);
  * cleanliness: the share of output documents still holding wiki markup.
"""

from __future__ import annotations

import bz2
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for the tests' dump re-packer

from bench._cli import bench_parser  # noqa: E402
from tests.multistream import write_multistream  # noqa: E402
from tinylm.corpus.wiki.markup import outside_formulas  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "enwiki-sample-pages-articles.xml.bz2"
MARKERS = ("{{", "}}", "[[", "]]", "<ref", "{|", "-{", "}-")
_PAGE = re.compile(rb"  <page>.*?</page>\n", re.S)
_PAGE_ID = re.compile(rb"(<page>\s*<title>[^<]*</title>\s*<ns>\d+</ns>\s*<id>)(\d+)(</id>)")
_WIKIEXTRACTOR_DOC = re.compile(r"<doc [^>]*>\n(.*?)</doc>", re.S)


def renumbered(page: bytes, shift: int) -> bytes:
    """A page with `shift` added to its page id."""
    return _PAGE_ID.sub(lambda m: m.group(1) + str(int(m.group(2)) + shift).encode() + m.group(3), page)


def repeated_xml(sample: Path, copies: int) -> tuple[Iterator[bytes], int, int]:
    """The sample's XML with its pages `copies` times, each copy under fresh page ids, as a stream of lines;
    with its size in bytes (to within the ids' extra digits) and its page count."""
    xml = bz2.decompress(sample.read_bytes())
    pages = _PAGE.findall(xml)
    head, tail = xml[: xml.index(pages[0])], xml[xml.rindex(pages[-1]) + len(pages[-1]) :]

    def lines() -> Iterator[bytes]:
        yield from head.splitlines(keepends=True)
        for copy in range(copies):
            for page in pages:
                yield from renumbered(page, copy * 10_000_000).splitlines(keepends=True)
        yield from tail.splitlines(keepends=True)

    return lines(), len(head) + len(tail) + copies * sum(map(len, pages)), copies * len(pages)


def build_dump(sample: Path, copies: int, target: Path) -> tuple[int, int]:
    """Write `copies` repetitions of the sample's pages as one bz2 dump; return (XML bytes, pages)."""
    lines, size, pages = repeated_xml(sample, copies)
    target.write_bytes(bz2.compress(b"".join(lines), 9))
    return size, pages


def dirty_share(texts: list[str]) -> float:
    """The share of documents holding a marker outside the formulas tinylm keeps as TeX (whose braces are content)."""
    return sum(any(marker in outside_formulas(text) for marker in MARKERS) for text in texts) / max(1, len(texts))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_wikiextractor(dump: Path, out: Path) -> tuple[float, list[str]]:
    seconds = timed(
        [sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump), "--processes", "1", "-q", "-o", str(out)]
    )
    texts = [
        m.group(1)
        for path in sorted(out.rglob("wiki_*"))
        for m in _WIKIEXTRACTOR_DOC.finditer(path.read_text(encoding="utf-8"))
    ]
    return seconds, texts


def run_tinylm(dump: Path, out: Path) -> tuple[float, list[str]]:
    code = (
        "from tinylm.corpus.extraction import ExtractUnit, extract_unit; from tinylm.config import ExtractConfig; "
        f"extract_unit(ExtractUnit({str(dump)!r}, 'bench'), {str(out)!r}, ExtractConfig(workers=1))"
    )
    seconds = timed([sys.executable, "-c", code])
    texts = [
        text for path in out.glob("*.parquet") for text in pq.read_table(path, columns=["text"]).column(0).to_pylist()
    ]
    return seconds, texts


def run_flow(dump: Path, out: Path, workers: int) -> float:
    # Imported here, not at the top: spawned workers re-import this script as their main
    # module, and should start as light as under the `tinylm` command.
    from tinylm.config import ExtractConfig
    from tinylm.flows.extract import run_extract

    started = time.perf_counter()
    run_extract([str(dump)], str(out), ExtractConfig(workers=workers, range_bytes=dump.stat().st_size // 16))
    return time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--copies", type=int, default=16, help="repetitions of the 206-page sample")
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    args = parser.parse_args()
    if args.quick:
        args.copies = 2
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        dump = root / "enwiki-bench-pages-articles.xml.bz2"
        xml_bytes, pages = build_dump(args.sample, args.copies, dump)
        print(f"dump: {pages} pages, {xml_bytes / 1e6:.1f} MB of XML, {dump.stat().st_size / 1e6:.1f} MB bz2")

        theirs, their_texts = run_wikiextractor(dump, root / "wikiextractor")
        ours, our_texts = run_tinylm(dump, root / "tinylm")
        print("\nsingle worker          seconds    MB/s   pages/s   documents   with markup")
        for name, seconds, texts in (("wikiextractor", theirs, their_texts), ("tinylm", ours, our_texts)):
            throughput = f"{seconds:9.2f} {xml_bytes / 1e6 / seconds:7.2f} {pages / seconds:9.0f}"
            print(f"{name:<20} {throughput} {len(texts):11d} {dirty_share(texts):12.3%}")
        print(f"tinylm / wikiextractor throughput: {theirs / ours:.2f}x")

        multistream = root / "enwiki-bench-pages-articles-multistream.xml.bz2"
        with bz2.open(dump) as source:
            write_multistream(source, multistream)
        run_flow(multistream, root / "warmup", workers=1)
        one = run_flow(multistream, root / "one", workers=1)
        two = run_flow(multistream, root / "two", workers=2)
        print(f"\nmultistream extract flow: 1 worker {one:.2f}s, 2 workers {two:.2f}s, scaling {one / two:.2f}x")


if __name__ == "__main__":
    main()
