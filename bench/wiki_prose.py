"""How much prose extraction keeps, and how much markup it leaves: tinylm against wikiextractor on the same pages.

    .venv/bin/python bench/wiki_prose.py [dump ...]

For each dump (default: the shared enwiki sample and the real zhwiki excerpts in
`tests/data/zhwiki/`), prints documents, characters of text and markup residue (occurrences
of the markers a clean page cannot hold) for both extractors. Characters are the measure
of kept prose: both tools drop the same infoboxes, tables and references, so a gap between
them is prose one of them lost (or markup one of them let through, which the residue shows).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for the extraction benchmark's runners

from bench._cli import bench_parser  # noqa: E402
from bench.extract import SAMPLE, run_tinylm, run_wikiextractor  # noqa: E402
from tinylm.corpus.wiki.markup import outside_formulas  # noqa: E402

ZHWIKI = Path(__file__).resolve().parents[1] / "tests" / "data" / "zhwiki" / "zhwiki-template-pages.xml.bz2"
RESIDUE = ("{{", "}}", "[[", "]]", "{|", "|}", "-{", "}-", "'''", "<ref", "</", "&nbsp;", "&amp;")


def residue(texts: list[str]) -> int:
    """Markers counted outside the formulas tinylm keeps as TeX (`$…$`), whose braces are content, not markup."""
    return sum(outside_formulas(text).count(marker) for text in texts for marker in RESIDUE)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("dumps", nargs="*", type=Path, default=[SAMPLE, ZHWIKI])
    args = parser.parse_args()
    dumps = args.dumps[-1:] if args.quick else args.dumps
    print(f"{'dump':<44} {'extractor':<14} {'documents':>9} {'characters':>11} {'residue':>8}")
    for dump in dumps:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            for name, run in (("wikiextractor", run_wikiextractor), ("tinylm", run_tinylm)):
                _, texts = run(dump, root / name)
                print(f"{dump.name:<44} {name:<14} {len(texts):>9} {sum(map(len, texts)):>11} {residue(texts):>8}")


if __name__ == "__main__":
    main()
