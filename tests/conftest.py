"""Shared fixtures: a real Prefect API (a temporary server) and a real MLflow store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from tests.helpers import make_shards, tiny_train_config
from tinylm.config import CorpusConfig, ExtractConfig, RefreshConfig, ShardsConfig, TokenizerConfig
from tinylm.corpus.clean import clean_file
from tinylm.corpus.dedup.deduplicate import deduplicate_files
from tinylm.corpus.extraction import ExtractUnit, extract_unit
from tinylm.corpus.readers import read_documents
from tinylm.flows.train import train_flow
from tinylm.stats import Stats
from tinylm.storage.documents import CorpusManifest, make_document, write_documents
from tinylm.storage.manifest import file_sha256, read_manifest, write_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tokens.tokenizer import train_tokenizer

TESTS_DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# Fixtures that stand up a real service: a Prefect API server, an MLflow store, Redis, tinylm's HTTP server. A test
# using one (directly or
# through another fixture) is a service test; `make test-fast` runs the unit tests, those with neither mark.
SERVICE_FIXTURES = {"prefect_api", "workspace", "module_workspace", "redis_url", "server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.service)


def shared_file(name: str) -> Path:
    """A file of ../shared/data; its absence is a setup error, never a silent skip."""
    path = SHARED_DATA / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the tests expect the shared sample data beside the repository")
    return path


@pytest.fixture(scope="session")
def enwiki_dump() -> Path:
    return shared_file("enwiki-sample-pages-articles.xml.bz2")


@pytest.fixture(scope="session")
def zuozhuan() -> Path:
    return shared_file("zuozhuan-zhs.txt")


@pytest.fixture(scope="session")
def constitution() -> Path:
    return TESTS_DATA / "us-constitution-zhs.txt"


@pytest.fixture(scope="session")
def table_dump() -> Path:
    return TESTS_DATA / "enwiki-table-markup.xml.bz2"


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, constitution: Path, table_dump: Path) -> Path:
    """A finished corpus directory of real Chinese and English text, built by the plain stage functions."""
    root = tmp_path_factory.mktemp("corpus")
    config = CorpusConfig(extract=ExtractConfig(text_mode="line"))
    cleaned = []
    for source in (constitution, table_dump):
        extracted = extract_unit(ExtractUnit(str(source), file_sha256(source)), root / "_work", config.extract)
        cleaned.append(clean_file(extracted["output"], root / "_work", config.convert, config.filters)["output"])
    stats = deduplicate_files(cleaned, root, config.dedup)
    write_manifest(root, CorpusManifest(stage="corpus", fingerprint="fixture", parts=stats["parts"]))
    return root


@pytest.fixture(scope="session")
def bilingual_corpus(tmp_path_factory: pytest.TempPathFactory, zuozhuan: Path, enwiki_dump: Path) -> Path:
    """A corpus directory with more text: every Zuozhuan line (zh, 1.8 MB) and the enwiki sample articles (en, 2.7
    MB)."""
    root = tmp_path_factory.mktemp("bilingual")
    lines = [line for line in zuozhuan.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_documents(
        root / "part-00000.parquet", [make_document("zuozhuan", i, line, lang="zh") for i, line in enumerate(lines)]
    )
    articles = read_documents(enwiki_dump, ExtractConfig(), Stats())
    write_documents(root / "part-00001.parquet", [dict(article, lang="en") for article in articles])
    write_manifest(root, CorpusManifest(stage="corpus", fingerprint="bilingual-fixture"))
    return root


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server with its own database, shared by the session's flow tests; yields its API URL."""
    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def prefect_exported(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test server's URL exported, as a user's shell would: a command run in-process uses it instead of
    starting a temporary server of its own (seconds each)."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    return prefect_api


@pytest.fixture(autouse=True)
def isolated_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs in its own directory, so a default like `./workspace` never lands in the checkout, and
    with the environment it started with: a command run in-process exports what it sets up (the temporary
    Prefect server's URL and mark), which would otherwise reach the next test's servers on the same worker."""
    monkeypatch.chdir(tmp_path)
    environment = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace whose embedded SQLite MLflow store is the one in use."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "workspace"
    root.mkdir()
    return root


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace (and its embedded MLflow store) shared by one module's tests, for the runs they all start from."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def shards_dir(prefect_api: None, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token shards (and a validation split) of the small corpus, for the training tests."""
    tokenizer_dir = tmp_path_factory.mktemp("tok")
    train_tokenizer(small_corpus, tokenizer_dir, TokenizerConfig(vocab_size=600))
    output = tmp_path_factory.mktemp("shards")
    make_shards(small_corpus, tokenizer_dir, output, ShardsConfig(shard_tokens=4096, validation_fraction=0.2))
    return output


@pytest.fixture
def refresh_setup(prefect_api, shards_dir, workspace, zuozhuan, tmp_path):
    """A finished base training run, a refresh config with an inbox, and Zuozhuan lines to drop in it."""
    train = tiny_train_config(max_shards=1, eval_batches=1, sample_tokens=0)
    base = train_flow(str(shards_dir), train, str(workspace))["run_id"]
    config = RefreshConfig(
        workspace=str(workspace),
        inbox=str(tmp_path / "inbox"),
        tokenizer=read_manifest(shards_dir, ShardsManifest).tokenizer_dir,
        train=train,
    )
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 60]
    return base, config, lines
