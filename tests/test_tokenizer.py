import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from tinylm.config import TokenizerConfig
from tinylm.storage.documents import CorpusManifest, corpus_parts, make_document, write_documents
from tinylm.storage.manifest import read_manifest, write_manifest
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import BYTE_ALPHABET_SIZE, SPECIAL_TOKENS, TokenizerManifest, load_tokenizer

MIXED = "美利坚合众国宪法 The Constitution, 1787年！😀 𠀀𪚥 naïve café\n\ttabs  and  spaces"


@pytest.fixture(scope="module")
def tokenizer_dir(small_corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(small_corpus, output, TokenizerConfig(vocab_size=1000))
    return output


def test_round_trip_is_exact_for_any_unicode(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    assert tokenizer.get_vocab_size() == 1000
    for text in (MIXED, "", " leading space", "ǅ ﷺ ‮ \u200b\U0010fffd"):
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_special_tokens_are_single_ids(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index
        assert tokenizer.encode(token).ids == [index]


def test_transformers_loads_it_with_the_chat_template(tokenizer_dir):
    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert hf.decode(hf(MIXED)["input_ids"]) == MIXED
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|pad|>"
    chat = hf.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"


def test_retraining_with_the_same_corpus_and_config_is_skipped(small_corpus, tokenizer_dir):
    trained = (tokenizer_dir / "tokenizer.json").stat().st_mtime_ns
    again = train_tokenizer(small_corpus, tokenizer_dir, TokenizerConfig(vocab_size=1000))
    assert (tokenizer_dir / "tokenizer.json").stat().st_mtime_ns == trained, "nothing is trained or written again"
    assert again == read_manifest(tokenizer_dir, TokenizerManifest)


def test_vocabulary_smaller_than_the_byte_alphabet_and_special_tokens_is_refused():
    with pytest.raises(ValidationError, match=f"greater than or equal to {BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)}"):
        TokenizerConfig(vocab_size=BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS) - 1)


def test_a_corpus_of_one_document_trains(tmp_path):
    corpus = tmp_path / "corpus"
    write_documents(corpus / "part-00000.parquet", [make_document("one", 1, "只有一个文档。Only one document here.")])
    write_manifest(corpus, CorpusManifest(stage="corpus", fingerprint="one"))
    manifest = train_tokenizer(corpus, tmp_path / "tok", TokenizerConfig(vocab_size=400, min_frequency=1))
    assert manifest.sample["documents"] == 1
    assert load_tokenizer(tmp_path / "tok").decode(load_tokenizer(tmp_path / "tok").encode(MIXED).ids) == MIXED


def test_an_empty_corpus_is_a_clear_error(tmp_path):
    corpus = tmp_path / "corpus"
    write_documents(corpus / "part-00000.parquet", [])
    write_manifest(corpus, CorpusManifest(stage="corpus", fingerprint="empty"))
    with pytest.raises(ValueError, match="no documents"):
        train_tokenizer(corpus, tmp_path / "tok", TokenizerConfig())


@pytest.mark.parametrize("vocab_size", [32000, 65536])
def test_large_vocabularies_train_and_load_everywhere(bilingual_corpus, tmp_path, vocab_size):
    manifest = train_tokenizer(bilingual_corpus, tmp_path, TokenizerConfig(vocab_size=vocab_size))
    assert manifest.vocab_size == vocab_size == load_tokenizer(tmp_path).get_vocab_size()
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(hf) == vocab_size and hf.decode(hf(MIXED)["input_ids"]) == MIXED
    assert max(load_tokenizer(tmp_path).get_vocab().values()) == vocab_size - 1


def test_compression_is_measured_on_held_out_text_of_each_language(bilingual_corpus, tmp_path):
    small = train_tokenizer(bilingual_corpus, tmp_path / "small", TokenizerConfig(vocab_size=1000))
    large = train_tokenizer(bilingual_corpus, tmp_path / "large", TokenizerConfig(vocab_size=8000))
    assert set(small.compression) == {"zh", "en"}
    for lang in ("zh", "en"):
        assert 1 < small.compression[lang]["bytes_per_token"] < large.compression[lang]["bytes_per_token"]
    assert large.compression["en"]["chars_per_token"] > 3 and large.compression["zh"]["chars_per_token"] > 1.2
    assert large.sample["by_language"]["zh"]["documents"] > 5000


TRAIN_AND_REPORT = """
import json, sys
from tinylm.config import TokenizerConfig
from tinylm.tokens.tokenizer import train_tokenizer
manifest = train_tokenizer(sys.argv[1], sys.argv[2], TokenizerConfig(vocab_size=2000, max_text_bytes=int(sys.argv[3])))
print(json.dumps(manifest.memory | manifest.sample))
"""


@pytest.mark.service  # a subprocess
def test_memory_is_bounded_by_the_budget_not_the_corpus(bilingual_corpus, tmp_path):
    """Each training in a fresh process: the same budget on a corpus four times larger costs about the same memory."""
    larger = tmp_path / "larger"
    for copy in range(4):
        for part in corpus_parts(bilingual_corpus):
            documents = [dict(row, id=f"{copy}-{row['id']}") for row in pq.read_table(part).to_pylist()]
            write_documents(larger / f"part-{copy}{part.name[-13:]}", documents)
    write_manifest(larger, CorpusManifest(stage="corpus", fingerprint="larger"))

    def growth(corpus, budget):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                TRAIN_AND_REPORT,
                str(corpus),
                str(tmp_path / f"tok-{corpus.name}-{budget}"),
                str(budget),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["bytes"] <= budget
        return report["peak_rss_bytes"] - report["rss_before_bytes"]

    bounded = growth(larger, 1_000_000)
    assert bounded < 1.3 * growth(bilingual_corpus, 1_000_000) + 30e6
    assert growth(larger, 16_000_000) > bounded + 30e6, "a larger budget must cost visibly more"
