"""Tokenizer stage: train byte-level BPE with HF `tokenizers` on a sample of the corpus.

Byte-level means every Unicode string (rare CJK extensions and emoji included) encodes
without an unknown token and decodes back to exactly itself. What the trained directory
holds, and how everything else loads it, is in `tokenizer_files.py`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tinylm.config import TokenizerConfig
from tinylm.peak_memory import peak_resident
from tinylm.storage.atomic import atomic_path, atomic_write_json
from tinylm.storage.documents import corpus_parts
from tinylm.storage.manifest import file_sha256, fingerprint, finished_output, manifest_hash, write_manifest
from tinylm.tokens.sampling import SamplePlan, sample_texts, survey
from tinylm.tokens.tokenizer_files import SPECIAL_TOKENS, TOKENIZER_FILE, TokenizerManifest, hf_tokenizer_files


def new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def tokenizer_fingerprint(corpus_dir: str | Path, config: TokenizerConfig) -> str:
    return fingerprint("tokenizer", config, {"corpus": manifest_hash(corpus_dir)})


def train_tokenizer(corpus_dir: str | Path, output_dir: str | Path, config: TokenizerConfig) -> TokenizerManifest:
    """Train on a bounded, language-balanced sample of the corpus; write a directory both HF libraries load.

    The sample streams from the parquet into `train_from_iterator`, so memory is bounded
    by `max_text_bytes` (what the trainer keeps of it), not by the corpus; the peak is
    measured and reported beside the budget.
    """
    output_dir = Path(output_dir)
    expected = tokenizer_fingerprint(corpus_dir, config)
    if (done := finished_output(output_dir, expected, TokenizerManifest)) is not None:
        return done
    parts = corpus_parts(corpus_dir)
    surveyed = survey(parts, config.seed, config.heldout_fraction, config.heldout_bytes)
    heldout_fraction = config.heldout_fraction
    if not any(surveyed.available.values()):
        heldout_fraction = 0.0
        surveyed = survey(parts, config.seed, heldout_fraction, 0)
    plan = SamplePlan.balanced(surveyed, config.max_text_bytes, config.language_weights, config.seed, heldout_fraction)
    tokenizer = new_tokenizer()
    taken: Counter[str] = Counter()
    started = time.perf_counter()
    with peak_resident() as memory:
        tokenizer.train_from_iterator(sample_texts(parts, plan, taken), trainer=bpe_trainer(config))
    seconds = time.perf_counter() - started
    by_language = {
        lang: {"bytes": taken[f"{lang}.bytes"], "documents": taken[f"{lang}.documents"]} for lang in plan.targets
    }
    if not any(counts["documents"] for counts in by_language.values()):
        raise ValueError(f"corpus {corpus_dir} has no documents to train a tokenizer on")
    with atomic_path(output_dir / TOKENIZER_FILE) as tmp:
        tokenizer.save(str(tmp))
    for name, content in hf_tokenizer_files().items():
        atomic_write_json(output_dir / name, content)
    manifest = TokenizerManifest(
        stage="tokenizer",
        fingerprint=expected,
        vocab_size=tokenizer.get_vocab_size(),
        special_tokens={token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS},
        tokenizer_sha256=file_sha256(output_dir / TOKENIZER_FILE),
        sample={
            "documents": sum(counts["documents"] for counts in by_language.values()),
            "bytes": sum(counts["bytes"] for counts in by_language.values()),
            "by_language": by_language,
        },
        compression=compression(tokenizer, surveyed.heldout),
        memory={
            "budget_bytes": config.max_text_bytes,
            "peak_rss_bytes": memory["peak"],
            "rss_before_bytes": memory["before"],
        },
        train_seconds=round(seconds, 3),
        config=config.model_dump(mode="json"),
    )
    return write_manifest(output_dir, manifest)


def bpe_trainer(config: TokenizerConfig) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def compression(tokenizer: Tokenizer, texts_by_language: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Characters and UTF-8 bytes per token on each language's texts: how much context a token buys."""
    measured = {}
    for lang, texts in sorted(texts_by_language.items()):
        tokens = sum(len(encoding.ids) for encoding in tokenizer.encode_batch(texts, add_special_tokens=False))
        if tokens:
            measured[lang] = {
                "documents": len(texts),
                "chars_per_token": round(sum(map(len, texts)) / tokens, 4),
                "bytes_per_token": round(sum(len(text.encode("utf-8")) for text in texts) / tokens, 4),
            }
    return measured
