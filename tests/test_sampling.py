"""The tokenizer's sample: deterministic, balanced across languages, bounded, and apart from the held-out text."""

from collections import Counter

import pyarrow.parquet as pq

from tinylm.storage.documents import corpus_parts, iter_document_batches
from tinylm.tokens.sampling import SamplePlan, document_unit, language_targets, sample_texts, survey


def test_targets_split_the_budget_by_weight_and_pass_on_what_a_language_lacks():
    assert language_targets({"zh": 1000, "en": 1000}, 400, {}) == {"zh": 200, "en": 200}
    assert language_targets({"zh": 100, "en": 1000}, 400, {}) == {"zh": 100, "en": 300}
    assert language_targets({"zh": 1000, "en": 1000}, 400, {"zh": 3}) == {"zh": 300, "en": 100}
    assert language_targets({"zh": 1000, "en": 1000, "other": 50}, 5000, {}) == {"zh": 1000, "en": 1000, "other": 50}
    assert language_targets({"zh": 1000, "en": 1000}, 400, {"en": 0}) == {"zh": 400, "en": 0}


def sampled(corpus, budget, seed=0):
    parts = corpus_parts(corpus)
    surveyed = survey(parts, seed, 0.01, 10**9)
    plan = SamplePlan.balanced(surveyed, budget, {}, seed, 0.01)
    taken = Counter()
    return list(sample_texts(parts, plan, taken)), taken, plan, surveyed


def test_the_sample_is_balanced_bounded_and_deterministic(bilingual_corpus):
    texts, taken, plan, _ = sampled(bilingual_corpus, 800_000)
    assert plan.targets == {"en": 400_000, "zh": 400_000}
    rows = pq.read_table(corpus_parts(bilingual_corpus), columns=["lang", "text"]).to_pylist()
    for lang in ("zh", "en"):
        largest = max(len(row["text"].encode("utf-8")) for row in rows if row["lang"] == lang)
        assert plan.targets[lang] - largest <= taken[f"{lang}.bytes"] <= plan.targets[lang], (
            "within a document of the target"
        )
    assert sum(len(text.encode("utf-8")) for text in texts) == taken["zh.bytes"] + taken["en.bytes"]
    assert sampled(bilingual_corpus, 800_000)[0] == texts
    assert sampled(bilingual_corpus, 800_000, seed=1)[0] != texts


def test_held_out_documents_are_never_sampled(bilingual_corpus):
    texts, _, _, surveyed = sampled(bilingual_corpus, 10**9)
    documents = [
        row
        for batch in iter_document_batches(corpus_parts(bilingual_corpus), ["id", "text"])
        for row in batch.to_pylist()
    ]
    units = [document_unit(document["id"], 0) for document in documents]
    assert texts == [document["text"] for document, unit in zip(documents, units) if unit < 0.99]
    heldout = [document["text"] for document, unit in zip(documents, units) if unit >= 0.99]
    assert heldout and sorted(heldout) == sorted(text for held in surveyed.heldout.values() for text in held)
