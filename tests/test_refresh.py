"""The refresh flow: new inbox files through corpus, dedup and shards into continued training, once each."""

import asyncio
import shutil
import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import ArtifactSort

from tests.helpers import write_lines
from tinylm.config import RefreshConfig
from tinylm.corpus.inbox import Ledger
from tinylm.flows.refresh import refresh_flow
from tinylm.storage.documents import CorpusManifest
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tracking.lineage import LOSS_PLOT


async def _newest_artifact(key: str):
    async with get_client() as client:
        return next(a for a in await client.read_artifacts(sort=ArtifactSort.CREATED_DESC) if a.key == key)


def all_runs():
    client = MlflowClient()
    return [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]


def test_refresh_trains_on_new_files_once_and_continues_the_lineage(refresh_setup, workspace, tmp_path):
    base, config, lines = refresh_setup
    inbox = tmp_path / "inbox"
    write_lines(inbox / "a.jsonl", lines[:200])

    first = refresh_flow(config)
    assert first["new_files"] == 1 and first["documents_kept"] > 150
    assert first["lineage"] == [base, first["run_id"]]
    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.data.tags["tinylm.init_run_id"] == base and run.data.tags["tinylm.lineage"] == base
    assert LOSS_PLOT in [item.path for item in client.list_artifacts(first["run_id"])]
    summary = asyncio.run(_newest_artifact("refresh-summary"))
    assert first["run_id"] in summary.data and first["batch"] in summary.data
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["tinylm.stage"] == "refresh" and parent.data.tags["tinylm.refresh"] == first["batch"]

    runs_before = len(all_runs())
    shutil.copy(inbox / "a.jsonl", inbox / "renamed.jsonl")
    nothing = refresh_flow(config)
    assert nothing == {"new_files": 0, "run_id": None, "inbox": str(inbox)}, (
        "same content under another name is not new"
    )
    assert f"nothing new in {inbox}" in asyncio.run(_newest_artifact("refresh-summary")).data
    assert len(all_runs()) == runs_before

    write_lines(inbox / "b.jsonl", lines[150:400])
    second = refresh_flow(config)
    assert second["lineage"] == [base, first["run_id"], second["run_id"]]
    assert client.get_run(second["run_id"]).data.tags["tinylm.init_run_id"] == first["run_id"]
    corpus = read_manifest(workspace / "corpus" / f"refresh-{second['batch']}", CorpusManifest)
    assert corpus.stats["exact_duplicates"] + corpus.stats["near_duplicates_of_index"] >= 50, (
        "lines seen before are dropped"
    )
    ledger = Ledger.load(workspace / "refresh")
    assert sorted(entry["name"] for entry in ledger.files.values()) == ["a.jsonl", "b.jsonl"]


def test_a_refresh_at_its_defaults_finds_the_workspaces_inbox_tokenizer_and_newest_run(refresh_setup, workspace):
    base, config, lines = refresh_setup
    write_lines(workspace / "inbox" / "a.jsonl", lines[:120])
    done = refresh_flow(RefreshConfig(workspace=str(workspace), train=config.train))
    assert done["new_files"] == 1 and done["lineage"] == [base, done["run_id"]]
    shards = read_manifest(workspace / "shards" / f"refresh-{done['batch']}", ShardsManifest)
    assert Path(shards.tokenizer_dir).resolve() == Path(config.tokenizer).resolve(), (
        "the tokenizer the base run was trained with"
    )


def test_a_refresh_that_cannot_run_fails_first_naming_what_is_missing(prefect_api, workspace, tmp_path):
    write_lines(workspace / "inbox" / "a.jsonl", ["a line that would be new"] * 3)
    with pytest.raises(
        ValueError, match="no finished training run .* run the pipeline there first, or set base_run_id"
    ):
        refresh_flow(RefreshConfig(workspace=str(workspace)))
    with pytest.raises(FileNotFoundError, match="tokenizer .*missing"):
        refresh_flow(RefreshConfig(workspace=str(workspace), base_run_id="r", tokenizer=str(tmp_path / "nowhere")))
    assert not (workspace / "corpus").exists(), "nothing was done before the refusal"


def test_two_refreshes_at_once_take_turns(refresh_setup, workspace, tmp_path):
    _, config, lines = refresh_setup
    write_lines(tmp_path / "inbox" / "c.jsonl", lines[:120])
    results = []
    threads = [threading.Thread(target=lambda: results.append(refresh_flow(config))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(result["new_files"] for result in results) == [0, 1]
    assert len(Ledger.load(workspace / "refresh").runs) == 2
