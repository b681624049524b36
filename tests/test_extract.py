import bz2
import codecs
import gzip
import json
import threading
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import TESTS_DATA
from tinylm.config import ExtractConfig
from tinylm.corpus import compression
from tinylm.corpus.extraction import ExtractUnit, extract_unit
from tinylm.corpus.readers import read_documents
from tinylm.corpus.readers.base import SUSPECT_SHARE, TruncatedInputError, suspect_share
from tinylm.corpus.wiki.markup import outside_formulas
from tinylm.stats import Stats
from tinylm.storage.documents import document_id
from tinylm.storage.manifest import file_sha256

WIKI_MARKUP = ("[[", "]]", "{{", "}}", "<ref", "{|")


def test_real_dump_yields_articles_without_markup(enwiki_dump):
    stats = Stats()
    documents = list(read_documents(enwiki_dump, ExtractConfig(), stats))
    assert stats["records"] == 206
    assert stats.group("skipped") == {"redirect": 99, "other_namespace": 1, "disambiguation": 8}
    assert len(documents) == 98
    assert not [d["title"] for d in documents if any(mark in outside_formulas(d["text"]) for mark in WIKI_MARKUP)]
    assert not [d["title"] for d in documents if "(disambiguation)" in d["title"]]
    anarchism = next(d for d in documents if d["title"] == "Anarchism")
    assert anarchism["text"].startswith("Anarchism is a political philosophy")
    assert anarchism["source"] == "enwiki"
    assert json.loads(anarchism["meta"])["timestamp"].endswith("Z")
    assert len({d["id"] for d in documents}) == 98
    assert anarchism["url"] == "https://en.wikipedia.org/wiki?curid=12"


def test_disambiguation_pages_are_kept_when_asked(enwiki_dump):
    documents = list(read_documents(enwiki_dump, ExtractConfig(skip_disambiguation=False), Stats()))
    assert len(documents) == 106
    assert "Austin (disambiguation)" in {d["title"] for d in documents}


def test_table_heavy_pages_come_out_clean(table_dump):
    documents = list(read_documents(table_dump, ExtractConfig(), Stats()))
    assert len(documents) == 5
    assert all(not any(mark in outside_formulas(d["text"]) for mark in WIKI_MARKUP) for d in documents)


def test_truncated_bz2_keeps_documents_and_names_the_file(enwiki_dump, tmp_path):
    cut = tmp_path / "enwiki-cut-pages-articles.xml.bz2"
    cut.write_bytes(enwiki_dump.read_bytes()[:900_000])
    with pytest.raises(TruncatedInputError) as raised:
        extract_unit(ExtractUnit(str(cut), file_sha256(cut)), tmp_path / "out", ExtractConfig())
    message = str(raised.value)
    assert str(cut) in message and "bytes" in message and "records read" in message
    partial = next((tmp_path / "out").glob("*.partial.parquet"))
    kept = pq.read_table(partial)
    assert 0 < kept.num_rows < 106
    assert not list((tmp_path / "out").glob("*[0-9a-f].parquet"))


def test_jsonl_invalid_lines_are_skipped_and_counted(tmp_path):
    source = tmp_path / "mixed.jsonl"
    source.write_text(
        '{"text": "first document"}\nnot json at all\n{"text": ""}\n{"title": "no text"}\n{"text": "second"}\n'
    )
    stats = Stats()
    documents = list(read_documents(source, ExtractConfig(), stats))
    assert [d["text"] for d in documents] == ["first document", "second"]
    assert stats.group("skipped") == {"invalid_json": 1, "empty": 1, "no_text_field": 1}
    assert stats.first_bad_records == [2, 4]


def test_a_line_with_undecodable_bytes_is_skipped_and_counted_never_written_as_mojibake(tmp_path):
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"good line\n" + "caf\xe9 au lait\n".encode("latin-1") + "另一行\n".encode())
    stats = Stats()
    documents = list(read_documents(source, ExtractConfig(text_mode="line"), stats))
    assert [d["text"] for d in documents] == ["good line", "另一行"]
    assert stats.group("skipped") == {"undecodable_bytes": 1} and stats.first_bad_records == [2]


@pytest.mark.parametrize(("encoding", "variant"), [("gb18030", "zh-hans"), ("gbk", "zh-hans"), ("big5", "zh-hant")])
@pytest.mark.parametrize("kind", ["txt", "jsonl"])
def test_chinese_files_in_gb18030_or_big5_are_read_as_their_text(encoding, variant, kind, zuozhuan, tmp_path):
    import zhconv

    lines = [
        zhconv.convert(line, variant) for line in zuozhuan.read_text(encoding="utf-8").splitlines() if line.strip()
    ][:300]
    lines = [line for line in lines if line.encode(encoding, errors="ignore").decode(encoding) == line]
    body = (
        "\n".join(json.dumps({"text": line}, ensure_ascii=False) if kind == "jsonl" else line for line in lines) + "\n"
    )
    source = tmp_path / f"legacy.{kind}"
    source.write_bytes(body.encode(encoding))
    result = extract_unit(
        ExtractUnit(str(source), file_sha256(source)), tmp_path / "out", ExtractConfig(text_mode="line")
    )
    texts = pq.read_table(result["output"]).column("text").to_pylist()
    assert texts == lines and len(lines) > 150
    assert result["read_as"] == {"big5" if encoding == "big5" else "gb18030": 1} and result["skipped"] == {}


def test_an_empty_file_is_a_counted_skip(tmp_path):
    for name in ("empty.txt", "empty.jsonl", "blank.txt"):
        source = tmp_path / name
        source.write_bytes(b"\n\n" if name == "blank.txt" else b"")
        result = extract_unit(ExtractUnit(str(source), file_sha256(source)), tmp_path / "out", ExtractConfig())
        assert (result["documents"], result["skipped"]) == (0, {"empty_file": 1}), name


def test_compressed_text_is_read_transparently(tmp_path, constitution):
    plain = list(read_documents(constitution, ExtractConfig(), Stats()))
    packed = tmp_path / "us-constitution-zhs.txt.bz2"
    packed.write_bytes(bz2.compress(constitution.read_bytes()))
    assert list(read_documents(packed, ExtractConfig(), Stats())) == [
        {**d, "url": d["url"].replace("us-constitution-zhs.txt", packed.name)} for d in plain
    ]


def test_paragraph_and_line_modes(tmp_path):
    source = tmp_path / "book.txt"
    source.write_text("第一章\n第一段。\n\n\n第二章\n  \n第二段。\n")
    paragraphs = list(read_documents(source, ExtractConfig(text_mode="paragraph"), Stats()))
    lines = list(read_documents(source, ExtractConfig(text_mode="line"), Stats()))
    assert [d["text"] for d in paragraphs] == ["第一章\n第一段。", "第二章", "第二段。"]
    assert [d["text"] for d in lines] == ["第一章", "第一段。", "第二章", "第二段。"]


def test_unknown_format_is_a_clear_error(tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown corpus format"):
        list(read_documents(source, ExtractConfig(), Stats()))


def test_extraction_is_reused_when_input_and_config_are_unchanged(constitution, tmp_path):
    digest = file_sha256(constitution)
    first = extract_unit(ExtractUnit(str(constitution), digest), tmp_path, ExtractConfig())
    second = extract_unit(ExtractUnit(str(constitution), digest), tmp_path, ExtractConfig())
    changed = extract_unit(ExtractUnit(str(constitution), digest), tmp_path, ExtractConfig(text_mode="line"))
    assert not first["reused"] and second["reused"] and not changed["reused"]
    assert second["output"] == first["output"] != changed["output"]
    assert second["documents"] == first["documents"] > 0 and second["skipped"] == first["skipped"]


def _wudao_records(zuozhuan, count: int) -> list[dict]:
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line) > 50]
    return [
        {
            "id": i,
            "uniqueKey": f"key{i}",
            "titleUkey": f"title{i}",
            "dataType": "历史",
            "title": lines[i][:10],
            "content": lines[i],
        }
        for i in range(count)
    ]


def test_wudao_json_array_becomes_documents_with_datatype_in_meta(zuozhuan, tmp_path):
    records = _wudao_records(zuozhuan, 5)
    text = json.dumps(records, ensure_ascii=False, indent=1)
    broken = text.replace(
        '"content": ' + json.dumps(records[2]["content"], ensure_ascii=False), '"content": "unterminated'
    )
    source = tmp_path / "part-2021278643.json"
    source.write_text(broken, encoding="utf-8")
    stats = Stats()
    documents = list(read_documents(source, ExtractConfig(), stats))
    assert [d["text"] for d in documents] == [r["content"] for i, r in enumerate(records) if i != 2]
    assert stats.group("skipped") == {"invalid_json": 1} and stats.first_bad_records == [3]
    assert documents[0]["title"] == records[0]["title"]
    assert json.loads(documents[0]["meta"]) == {"dataType": "历史", "uniqueKey": "key0", "titleUkey": "title0"}


def test_wudao_records_wrapper_and_an_id_of_zero_as_flagai_writes_them(tmp_path):
    source = TESTS_DATA / "wudao" / "flagai-records.json"
    (record,) = json.loads(source.read_text(encoding="utf-8"))["RECORDS"]
    stats = Stats()
    (document,) = read_documents(source, ExtractConfig(), stats)
    assert document["text"] == record["content"] and stats.group("skipped") == {}
    assert document["id"] == document_id("flagai-records", 0), "id 0 is the record's id, not a missing one"
    unkeyed = tmp_path / "unkeyed.json"
    unkeyed.write_text(
        json.dumps([{"content": "没有编号的记录。"}, {"id": 0, "content": "编号为零的记录。"}], ensure_ascii=False)
    )
    assert [d["id"] for d in read_documents(unkeyed, ExtractConfig(), Stats())] == [
        document_id("unkeyed", 1),
        document_id("unkeyed", 0),
    ]


@pytest.mark.parametrize("cut", ["inside-a-record", "before-the-closing-bracket"])
def test_a_wudao_array_cut_short_is_reported_as_truncated_keeping_the_records_before(cut, zuozhuan, tmp_path):
    records = _wudao_records(zuozhuan, 5)
    text = json.dumps(records, ensure_ascii=False)
    source = tmp_path / "part-cut.json"
    source.write_text(
        text[: text.index(records[3]["content"]) + 10] if cut == "inside-a-record" else text[:-1], encoding="utf-8"
    )
    unit = ExtractUnit(str(source), file_sha256(source))
    with pytest.raises(TruncatedInputError, match=f"{source}: the file breaks off .*the JSON array") as raised:
        extract_unit(unit, tmp_path / "out", ExtractConfig())
    kept = 3 if cut == "inside-a-record" else 5
    assert f"the {kept} documents before the break are in" in str(raised.value)
    (partial,) = (tmp_path / "out").glob("*.partial.parquet")
    assert pq.read_table(partial).column("text").to_pylist() == [record["content"] for record in records[:kept]]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("kind", ["txt", "jsonl"])
def test_files_with_a_byte_order_mark_read_as_their_text(encoding, kind, constitution, tmp_path):
    lines = [line for line in constitution.read_text(encoding="utf-8").splitlines() if line.strip()][:20]
    body = (
        "\n".join(json.dumps({"text": line}, ensure_ascii=False) if kind == "jsonl" else line for line in lines) + "\n"
    )
    source = tmp_path / f"windows.{kind}"
    source.write_bytes((codecs.BOM_UTF16_BE if encoding == "utf-16-be" else b"") + body.encode(encoding))
    stats = Stats()
    documents = list(read_documents(source, ExtractConfig(text_mode="line"), stats))
    assert [document["text"] for document in documents] == lines
    assert stats["suspect_characters"] == 0


def test_a_file_that_is_not_utf8_is_flagged_not_silently_filtered(constitution, tmp_path):
    source = tmp_path / "no-mark.txt"
    source.write_bytes(constitution.read_text(encoding="utf-8")[:2000].encode("utf-16-le"))
    result = extract_unit(ExtractUnit(str(source), file_sha256(source)), tmp_path / "out", ExtractConfig())
    assert suspect_share(result) > SUSPECT_SHARE


def _peak_reading(path) -> tuple[int, int]:
    tracemalloc.start()
    count = sum(1 for _ in read_documents(path, ExtractConfig(), Stats()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak


def test_wudao_reading_memory_does_not_grow_with_the_file(zuozhuan, tmp_path):
    records = _wudao_records(zuozhuan, 200)
    peaks = {}
    for repeats in (40, 120):
        source = tmp_path / f"wudao-{repeats}.json"
        copies = (
            {**record, "uniqueKey": f"{repeat}-{record['uniqueKey']}"}
            for repeat in range(repeats)
            for record in records
        )
        source.write_text(json.dumps(list(copies), ensure_ascii=False), encoding="utf-8")
        count, peaks[repeats] = _peak_reading(source)
        assert count == 200 * repeats
    assert source.stat().st_size > 11_000_000
    assert peaks[120] < peaks[40] * 1.2


def test_wiki_xml_reading_memory_does_not_grow_with_the_file(enwiki_dump, tmp_path):
    xml = bz2.decompress(enwiki_dump.read_bytes())
    first, last = xml.index(b"  <page>"), xml.rindex(b"</page>") + len(b"</page>\n")
    peaks = {}
    for copies in (1, 2):
        source = tmp_path / f"enwiki-{copies}.xml"
        source.write_bytes(xml[:first] + xml[first:last] * copies + xml[last:])
        count, peaks[copies] = _peak_reading(source)
        assert count == 98 * copies
    assert peaks[2] < peaks[1] * 1.2, "a reader that kept what it read would double its peak"


def test_utf16_xml_is_read_as_its_declaration_says(table_dump, tmp_path):
    text = bz2.decompress(table_dump.read_bytes()).decode("utf-8")
    utf16 = tmp_path / "enwiki-utf16.xml"
    utf16.write_bytes('<?xml version="1.0" encoding="UTF-16"?>\n'.encode("utf-16") + text.encode("utf-16-le"))
    expected = list(read_documents(table_dump, ExtractConfig(), Stats()))
    assert [d["text"] for d in read_documents(utf16, ExtractConfig(), Stats())] == [d["text"] for d in expected]


@pytest.mark.parametrize(
    "suffix, compress", [(".gz", gzip.compress), (".bz2", bz2.compress), (".zst", zstandard.ZstdCompressor().compress)]
)
def test_compressed_jsonl_is_read_transparently(tmp_path, suffix, compress):
    lines = [{"text": "第一篇文档"}, {"text": "second document", "id": "b"}]
    payload = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    source = tmp_path / f"pretrain_hq.jsonl{suffix}"
    source.write_bytes(compress(payload))
    documents = list(read_documents(source, ExtractConfig(), Stats()))
    assert [d["text"] for d in documents] == ["第一篇文档", "second document"]
    assert documents[0]["source"] == "pretrain_hq"


def test_parquet_text_column_is_configurable(tmp_path):
    source = tmp_path / "web.parquet"
    pq.write_table(pa.table({"content": ["一篇", "  ", "another"], "title": ["t1", "t2", "t3"]}), source)
    stats = Stats()
    documents = list(read_documents(source, ExtractConfig(parquet_text_column="content"), stats))
    assert [(d["text"], d["title"]) for d in documents] == [("一篇", "t1"), ("another", "t3")]
    assert stats.group("skipped") == {"empty": 1}
    with pytest.raises(ValueError, match="no column 'text'"):
        list(read_documents(source, ExtractConfig(), Stats()))


def test_truncated_zstd_is_reported(tmp_path):
    source = tmp_path / "cut.jsonl.zst"
    payload = "\n".join(json.dumps({"text": f"document {i} " * 20}) for i in range(2000)).encode()
    source.write_bytes(zstandard.ZstdCompressor().compress(payload)[:3000])
    with pytest.raises(TruncatedInputError, match="cut.jsonl.zst"):
        list(read_documents(source, ExtractConfig(), Stats()))


def test_a_failed_read_is_not_retried(tmp_path):
    source = tmp_path / "cut.jsonl.bz2"
    payload = b"".join(b'{"text": "%d"}\n' % (i * 7919 % 1_000_003) for i in range(200_000))
    compressed = bz2.compress(payload)
    source.write_bytes(compressed[: len(compressed) // 2])
    stream = compression.decompressed(source, compression.CountingReader(open(source, "rb")))
    with pytest.raises(EOFError):
        stream.read()
    again: list[bytes] = []
    reader = threading.Thread(target=lambda: again.append(stream.read()), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert again == [b""], "a second read after the failure must end, not wait on the dead read-ahead thread"
    stream.close()
