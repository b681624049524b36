"""Token log-probabilities in OpenAI's legacy completions shape, which evaluation tools read from a server.

lm-evaluation-harness's `local-completions` model scores a continuation by asking `/v1/completions` for the prompt
echoed with `logprobs`, and sums `token_logprobs` over the continuation's positions; it calls a continuation
greedy when each of its tokens is the most likely one in `top_logprobs`. One forward pass over the whole sequence
gives every position's distribution, as the harness's in-process model computes it, so a score over HTTP is the
score in process.
"""

from __future__ import annotations

import torch

from tinylm.inference.generate import LoadedModel


def legacy_logprobs(loaded: LoadedModel, ids: list[int], first: int, top: int | None) -> dict:
    """`tokens`, `token_logprobs`, `top_logprobs` and `text_offset` of `ids[first:]`, each token scored given the
    ones before it (the sequence's first token has none: None, as OpenAI answers it). `top` None or 0: no
    alternatives.

    A top dict maps token text to log-probability. Byte-level tokens that end inside a character decode alike, so
    two can share a key: they are entered least likely first, and the likelier one's value is the one kept.
    """
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids], device=loaded.model.output.weight.device)).logits[0]
    distributions = torch.log_softmax(logits.float(), dim=-1)
    text = loaded.tokenizer.decode
    found: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for position in range(first, len(ids)):
        found["tokens"].append(text([ids[position]]))
        found["text_offset"].append(len(text(ids[first:position])))
        if position == 0:
            found["token_logprobs"].append(None)
            found["top_logprobs"].append(None)
            continue
        before = distributions[position - 1]
        found["token_logprobs"].append(before[ids[position]].item())
        best = before.topk(top) if top else None
        ranked = [] if best is None else zip(best.indices.tolist()[::-1], best.values.tolist()[::-1], strict=True)
        found["top_logprobs"].append({text([token]): value for token, value in ranked})
    return found
