import os
import signal
import subprocess
import sys

import pytest

from tinylm.config import CorpusConfig, DedupConfig
from tinylm.storage.atomic import atomic_path, atomic_write_json, remove_stale_temps
from tinylm.storage.documents import CorpusManifest, DocumentWriter, make_document, read_batches
from tinylm.storage.manifest import fingerprint, finished_output, read_manifest, write_manifest
from tinylm.storage.mirror import pull, push
from tinylm.tokens.shard_files import ShardsManifest


def test_atomic_path_leaves_nothing_when_the_body_fails(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_a_directory_whole(tmp_path):
    target = tmp_path / "ckpt"
    for generation in (1, 2):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "state").write_text(str(generation))
    assert (target / "state").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.service  # a subprocess
def test_a_writer_killed_mid_write_leaves_no_final_file(tmp_path):
    target = tmp_path / "big.bin"
    script = (
        "import sys, time\n"
        "from tinylm.storage.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    handle = open(tmp, 'wb'); handle.write(b'x' * 1000); handle.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"writing\n"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not target.exists()
    live = tmp_path / f".other.parquet.tmp-{os.getpid()}-0123abcd"  # a writer that still runs: this process
    live.write_bytes(b"in progress")
    remove_stale_temps(tmp_path)
    assert list(tmp_path.iterdir()) == [live], "only the killed writer's temp is removed"


def test_fingerprint_follows_config_and_inputs_not_key_order():
    inputs = {"a.txt": "1" * 64, "b.txt": "2" * 64}
    same = fingerprint("corpus", CorpusConfig(), dict(reversed(list(inputs.items()))))
    assert fingerprint("corpus", CorpusConfig(), inputs) == same
    assert fingerprint("corpus", CorpusConfig(dedup=DedupConfig(threshold=0.7)), inputs) != same
    assert fingerprint("corpus", CorpusConfig(), {**inputs, "b.txt": "3" * 64}) != same


def test_finished_output_needs_the_matching_manifest(tmp_path):
    assert finished_output(tmp_path, "abc") is None
    written = write_manifest(tmp_path, CorpusManifest(stage="corpus", fingerprint="abc", stats={"kept": 3}))
    assert finished_output(tmp_path, "abc", CorpusManifest) == written and written.stats == {"kept": 3}
    assert finished_output(tmp_path, "abd") is None
    atomic_write_json(tmp_path / "manifest.json", {"fingerprint": "other"})
    assert finished_output(tmp_path, "abc") is None


def test_a_manifest_reads_as_its_stages_model_and_keeps_what_the_model_does_not_name(tmp_path):
    """An older shards manifest (no validation split, no mixing) with a key this version does not know still reads,
    and is written back with it; one that lacks what training needs is refused naming the file and the field."""
    older = {"stage": "shards", "fingerprint": "f", "tokenizer_sha256": "a" * 64, "tokenizer_dir": "/tok"}
    older |= {"vocab_size": 600, "dtype": "<u2", "shard_tokens": 8, "total_tokens": 8, "documents": 1}
    older |= {"shards": [{"file": "shard-00000.bin", "tokens": 8, "documents": 1, "sha256": "b" * 64}]}
    atomic_write_json(tmp_path / "manifest.json", older | {"written_by": "tinylm 0.1"})
    manifest = read_manifest(tmp_path, ShardsManifest)
    assert manifest.shards[0].tokens == 8 and manifest.validation.shards == [] and manifest.eos_id is None
    assert write_manifest(tmp_path, manifest).fields()["written_by"] == "tinylm 0.1"
    atomic_write_json(tmp_path / "manifest.json", {k: v for k, v in older.items() if k != "dtype"})
    with pytest.raises(ValueError, match=r"manifest .*manifest.json is not a ShardsManifest \(dtype: Field required\)"):
        read_manifest(tmp_path, ShardsManifest)


def test_mirror_sends_a_stage_manifest_last_and_pulls_it_only_when_finished(tmp_path):
    stage = tmp_path / "stage"
    (stage / "_work").mkdir(parents=True)
    (stage / "_work" / "scratch.bin").write_bytes(b"x")
    (stage / "part-00000.parquet").write_bytes(b"rows")
    (stage / "sub").mkdir()
    (stage / "sub" / "nested.txt").write_text("nested")
    (stage / "manifest.json").write_text("{}")
    mirror = tmp_path / "mirror"
    assert push(stage, str(mirror)) == 3, "scratch folders stay local"
    copy = tmp_path / "copy"
    assert pull(copy, str(mirror)) and (copy / "sub" / "nested.txt").read_text() == "nested"
    assert not pull(copy, str(mirror)), "a local finished stage is never overwritten"
    (mirror / "manifest.json").unlink()
    assert not pull(tmp_path / "other", str(mirror)), "a remote stage without its manifest is unfinished"


def test_read_batches_hands_out_every_row_in_order_one_row_group_at_a_time(tmp_path):
    path = tmp_path / "docs.parquet"
    with DocumentWriter(path, rows_per_group=3) as writer:
        for number in range(10):
            writer.write(make_document("s", number, f"text {number}"))
    batches = list(read_batches(path, 2, ["text"]))
    assert [batch.num_rows for batch in batches] == [2, 1, 2, 1, 2, 1, 1]
    assert [text for batch in batches for text in batch.column("text").to_pylist()] == [f"text {n}" for n in range(10)]
