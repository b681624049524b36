"""A corpus made again in its folder keeps its documents: the persistent dedup index holds each corpus once, so a
rerun with other settings meets the other corpora, never its own previous version; and a run that would keep no
document fails without touching the corpus it would have replaced."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tinylm.config import CorpusConfig, ExtractConfig, FilterConfig
from tinylm.corpus.dedup.deduplicate import EmptyCorpusError
from tinylm.flows.corpus import corpus_flow
from tinylm.storage.manifest import read_manifest


def documents(folder: Path) -> dict[str, str]:
    return {
        row["id"]: row["text"]
        for part in sorted(folder.glob("part-*.parquet"))
        for row in pq.read_table(part, columns=["id", "text"]).to_pylist()
    }


def test_a_rerun_with_other_settings_keeps_its_corpus_and_a_filter_changes_only_what_it_filters(
    prefect_api, constitution, zuozhuan, workspace, tmp_path
):
    corpus, index = workspace / "corpus" / "default", str(workspace / "dedup-index")
    lines = CorpusConfig(extract=ExtractConfig(text_mode="line"), keep_rejected=True)

    def run(config: CorpusConfig, inputs: list[str], output: Path = corpus) -> dict:
        return corpus_flow(inputs, str(output), config, index, str(workspace))

    first = run(lines, [str(constitution)])
    before = documents(corpus)
    assert first["stats"]["kept"] == len(before) > 50

    # The eval sets feed decontamination, so naming one changes the corpus's fingerprint and the stage reruns.
    unrelated = tmp_path / "eval.txt"
    unrelated.write_text("春秋左氏传隐公元年经元年春王正月三月公及邾仪父盟于蔑夏五月郑伯克段于鄢\n", encoding="utf-8")
    decontaminated = lines.model_copy(
        update={"filters": lines.filters.model_copy(update={"decontaminate": [str(unrelated)]})}
    )
    second = run(decontaminated, [str(constitution)])
    assert not second["reused"] and second["stats"]["exact_duplicates_of_index"] == 0
    assert documents(corpus) == before, "a rerun is not deduplicated against its own previous version"

    stricter = lines.model_copy(update={"filters": FilterConfig(min_chars=60)})
    run(stricter, [str(constitution)])
    too_short = {
        row["id"]
        for part in (corpus / "rejected" / "too_short").glob("*.parquet")
        for row in pq.read_table(part).to_pylist()
    }
    assert too_short and documents(corpus) == {key: text for key, text in before.items() if key not in too_short}

    # Another corpus folder of the same text is all duplicates of this one: refused, and its own earlier version
    # (made from other text) stays as it was, parts and manifest.
    other = workspace / "corpus" / "other"
    zuozhuan_lines = tmp_path / "zuozhuan.txt"
    zuozhuan_lines.write_text("\n".join(zuozhuan.read_text(encoding="utf-8").splitlines()[:400]), encoding="utf-8")
    run(lines, [str(zuozhuan_lines)], other)
    kept_before, manifest_before = documents(other), read_manifest(other)
    with pytest.raises(EmptyCorpusError, match=r"as exact_duplicate of the dedup index.*previous output is kept"):
        run(stricter, [str(constitution)], other)
    assert documents(other) == kept_before and read_manifest(other) == manifest_before
