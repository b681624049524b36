"""keep_rejected: every document a run drops is kept under its reason, and nothing is lost between the kept corpus
and the rejected files."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import edited
from tests.test_dedup import jaccard, kept_ids, paragraphs, write  # noqa: F401  (paragraphs: a fixture)
from tinylm.config import (
    ConvertConfig,
    CorpusConfig,
    DedupConfig,
    EvalConfig,
    ExtractConfig,
    FilterConfig,
    PipelineConfig,
)
from tinylm.corpus.clean import clean_file
from tinylm.corpus.decontamination import EvaluationNgrams
from tinylm.corpus.dedup.deduplicate import deduplicate_files
from tinylm.flows.corpus import corpus_flow
from tinylm.storage.documents import make_document


def ids_by_reason(root: Path) -> dict[str, list[str]]:
    return {
        folder.name: [row["id"] for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
        for folder in sorted(root.iterdir())
    }


def test_the_filters_keep_what_they_drop_under_the_rule_that_dropped_it(zuozhuan, tmp_path):
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if line.strip()][:300]
    documents = [make_document("zuozhuan", number, line, lang="zh") for number, line in enumerate(lines)]
    source = tmp_path / "lines.parquet"
    write(source, documents)
    result = clean_file(source, tmp_path / "work", ConvertConfig(), FilterConfig(), tmp_path / "rejected")
    dropped = result["dropped"]
    assert dropped.get("too_short", 0) > 10, dropped
    rejected = ids_by_reason(tmp_path / "rejected")
    assert {reason: len(found) for reason, found in rejected.items()} == dropped
    kept = [row["id"] for row in pq.read_table(result["output"]).to_pylist()]
    assert sorted(kept + [i for found in rejected.values() for i in found]) == sorted(d["id"] for d in documents)
    short = pq.read_table(result["rejected"]["too_short"]).to_pylist()
    assert all(len(row["text"]) < FilterConfig().min_chars for row in short) and short[0]["source"] == "zuozhuan"
    again = clean_file(source, tmp_path / "work", ConvertConfig(), FilterConfig(), tmp_path / "rejected")
    assert again["reused"] and again["rejected"] == result["rejected"]
    plain = clean_file(source, tmp_path / "plain", ConvertConfig(), FilterConfig())
    assert not plain["rejected"] and plain["output"] != result["output"]


def test_dedup_keeps_each_removed_document_under_exact_near_or_index_duplicate(paragraphs, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    earlier = [make_document("old", 0, paragraphs[25], lang="zh")]
    deduplicate_files([write(tmp_path / "old.parquet", earlier)], tmp_path / "old", DedupConfig(), index, "old")
    base = [make_document("zz", i, text, lang="zh") for i, text in enumerate(paragraphs[:20])]
    longer = edited(paragraphs[1], 0.005, seed=1) + "此段更长。"
    assert jaccard(paragraphs[1], longer) > 0.9
    copy = make_document("zz", "copy", paragraphs[0] + "  ", lang="zh")
    near = make_document("zz", "near", longer, lang="zh")
    of_index = make_document("zz", "again", edited(paragraphs[25], 0.003, seed=2), lang="zh")
    sources = [
        write(tmp_path / "a.parquet", base[:10]),
        write(tmp_path / "b.parquet", [*base[10:], copy, near, of_index]),
    ]
    stats = deduplicate_files(sources, tmp_path / "out", DedupConfig(), index, "new", tmp_path / "rejected")
    assert ids_by_reason(tmp_path / "rejected") == {
        "exact_duplicate": [copy["id"]],
        "near_duplicate": [base[1]["id"]],
        "near_duplicate_of_index": [of_index["id"]],
    }
    assert sorted(stats["rejected"]) == ["exact_duplicate", "near_duplicate", "near_duplicate_of_index"]
    everything = [d["id"] for d in [*base, copy, near, of_index]]
    assert sorted(kept_ids(tmp_path / "out") + [copy["id"], base[1]["id"], of_index["id"]]) == sorted(everything)


def test_the_corpus_flow_keeps_exactly_what_this_run_dropped(prefect_api, constitution, tmp_path):
    output, workspace = tmp_path / "corpus", tmp_path / "workspace"
    lines = CorpusConfig(extract=ExtractConfig(text_mode="line"), keep_rejected=True)
    first = corpus_flow([str(constitution)], str(output), lines, workspace=str(workspace))
    rejected = ids_by_reason(output / "rejected")
    assert sum(len(found) for found in rejected.values()) == sum(first["stats"]["filtered"].values()) + sum(
        first["stats"][name] for name in ("exact_duplicates", "near_duplicates", "near_duplicates_of_index")
    )
    stricter = lines.model_copy(update={"filters": FilterConfig(min_chars=60)})
    second = corpus_flow([str(constitution)], str(output), stricter, workspace=str(workspace))
    again = ids_by_reason(output / "rejected")
    assert len(again["too_short"]) == second["stats"]["filtered"]["too_short"] > len(rejected["too_short"])
    assert sum(map(len, again.values())) + second["stats"]["kept"] == second["stats"]["documents_in"]
    corpus_flow(
        [str(constitution)], str(output), stricter.model_copy(update={"keep_rejected": False}), workspace=str(workspace)
    )
    assert not list((output / "rejected").glob("*/*.parquet")), "a run that keeps nothing leaves no earlier run's files"


def test_a_lines_preset_for_one_source_keeps_its_short_lines_and_the_others_keep_the_fields(zuozhuan, tmp_path):
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if 5 <= len(line.strip()) < 20][:50]
    documents = [make_document("zuozhuan", n, line, lang="zh") for n, line in enumerate(lines)]
    documents += [make_document("zhwiki", n, line, lang="zh") for n, line in enumerate(lines)]
    source = tmp_path / "mixed.parquet"
    write(source, documents)
    by_source = FilterConfig(source_presets={"zuo*": "lines"})
    result = clean_file(source, tmp_path / "work", ConvertConfig(), by_source, tmp_path / "rejected")
    assert result["judged_as"] == {"fields": len(lines), "lines": len(lines)}
    assert result["kept"] == len(lines) and result["dropped"] == {"too_short": len(lines)}
    assert {row["source"] for row in pq.read_table(result["output"]).to_pylist()} == {"zuozhuan"}
    assert {row["source"] for row in pq.read_table(result["rejected"]["too_short"]).to_pylist()} == {"zhwiki"}
    everywhere = clean_file(source, tmp_path / "all", ConvertConfig(), FilterConfig(preset="lines"))
    assert everywhere["kept"] == 2 * len(lines) and everywhere["judged_as"] == {"lines": 2 * len(lines)}
    assert FilterConfig(preset="wiki", min_words=99).for_source("enwiki")[1].min_words == 20, "a preset sets its fields"


def test_documents_quoting_an_evaluation_question_are_dropped_as_contaminated_and_named(zuozhuan, tmp_path):
    cmmlu = Path(__file__).parent / "data" / "cmmlu"
    question = next(
        row["Question"] for row in csv.DictReader((cmmlu / "test" / "chinese_history.csv").open(encoding="utf-8"))
    )
    prose = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 200][:5]
    quoted = prose[0][:100] + question.replace("，", "、 ") + "  " + prose[0][100:]  # punctuation changed
    english = tmp_path / "questions.txt"
    english.write_text(
        "Which of the following rights is protected by the First Amendment to the Constitution?\nShort?\n"
    )
    copied = (
        "Students asked: which of the following RIGHTS is protected by the first amendment to the constitution; " * 3
    )
    documents = [make_document("web", n, text, lang="zh") for n, text in enumerate([*prose, quoted])]
    documents.append(make_document("web", "en", copied + " " + "We the People of the United States " * 10, lang="en"))
    source = tmp_path / "web.parquet"
    write(source, documents)
    filters = FilterConfig(decontaminate=[str(cmmlu), str(english)])
    result = clean_file(source, tmp_path / "work", ConvertConfig(), filters, tmp_path / "rejected")
    assert result["contaminated_by"] == {"cmmlu": 1, "questions": 1}
    assert result["dropped"]["contaminated"] == 2 and result["kept"] == len(prose)
    assert {row["id"] for row in pq.read_table(result["rejected"]["contaminated"]).to_pylist()} == {
        documents[-2]["id"],
        documents[-1]["id"],
    }
    assert EvaluationNgrams([str(english)], 13).unmatchable == {"questions": 1}
    changed = english.read_text() + "Another question that is long enough to be matched by thirteen words or more?\n"
    english.write_text(changed)
    assert clean_file(source, tmp_path / "work", ConvertConfig(), filters)["output"] != result["output"]
    with pytest.raises(FileNotFoundError, match="neither a benchmark folder nor a text file"):
        clean_file(source, tmp_path / "work", ConvertConfig(), FilterConfig(decontaminate=[str(tmp_path / "none")]))


def test_a_pipeline_with_an_eval_section_decontaminates_its_corpus_with_its_benchmark_folders(tmp_path):
    cmmlu = str(Path(__file__).parent / "data" / "cmmlu")
    evaluated = PipelineConfig(eval=EvalConfig(benchmarks=[cmmlu, "hellaswag"]))
    assert evaluated.corpus_config().filters.decontaminate == [cmmlu], "a harness task name has no local questions"
    assert PipelineConfig().corpus_config().filters.decontaminate == []
    opted_out = evaluated.model_copy(update={"decontaminate_with_eval": False})
    assert opted_out.corpus_config().filters.decontaminate == []
