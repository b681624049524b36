"""Re-packing a dump as multistream, the way Wikimedia builds them: a fixture for the tests and benchmarks.

Only tests and the extraction benchmarks (`bench/extract.py`, `bench/extract_scale.py`) make multistream dumps; the
product only reads them.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path
from typing import IO

from tinylm.corpus.wiki.multistream import INDEX_SUFFIX
from tinylm.storage.atomic import atomic_path

_PAGE_ID = re.compile(rb"<id>(\d+)</id>")
_PAGE_TITLE = re.compile(rb"<title>(.*?)</title>")


def write_multistream(source: IO[bytes], dump: str | Path, pages_per_stream: int = 100) -> Path:
    """Re-pack an XML export as a multistream dump plus its index, as Wikimedia builds them.

    `source` is the decompressed XML. The header (up to the first `<page>`) and the footer
    (after the last `</page>`) get streams of their own; pages go `pages_per_stream` to a
    stream. Returns the index path. Both files are written atomically.
    """
    dump = Path(dump)
    index = dump.with_name(dump.name.removesuffix(".xml.bz2") + INDEX_SUFFIX)
    with atomic_path(dump) as dump_tmp, atomic_path(index) as index_tmp:
        with open(dump_tmp, "wb") as out, bz2.open(index_tmp, "wb") as index_out:
            header: list[bytes] = []
            page: list[bytes] = []
            pending: list[bytes] = []
            between: list[bytes] = []
            in_header = True

            def flush() -> None:
                if not pending:
                    return
                offset = out.tell()
                for text in pending:
                    page_id = _PAGE_ID.search(text).group(1)  # type: ignore[union-attr]
                    title = _PAGE_TITLE.search(text).group(1)  # type: ignore[union-attr]
                    index_out.write(b"%d:%s:%s\n" % (offset, page_id, title))
                out.write(bz2.compress(b"".join(pending)))
                pending.clear()

            for line in source:
                starts_page = line.strip() == b"<page>"
                if in_header and not starts_page:
                    header.append(line)
                    continue
                if in_header:
                    out.write(bz2.compress(b"".join(header)))
                    in_header = False
                if starts_page:
                    page, between = [*between, line], []
                elif page:
                    page.append(line)
                    if line.strip() == b"</page>":
                        pending.append(b"".join(page))
                        page = []
                        if len(pending) == pages_per_stream:
                            flush()
                else:
                    between.append(line)
            if in_header:
                out.write(bz2.compress(b"".join(header)))
            flush()
            out.write(bz2.compress(b"".join(between)))
    return index
