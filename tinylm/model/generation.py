"""Token-by-token generation with a KV cache, and the sampling rules chat users expect."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinylm.model.transformer import KVCache, Transformer


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off; repetition_penalty 1 is none."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0


def pick_next(logits: torch.Tensor, seen: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """One token id from a (vocab,) row of logits, given the ids `seen` so far."""
    logits = logits.float().clone()
    if sampling.repetition_penalty != 1.0 and len(seen):
        previous = logits[seen]
        logits[seen] = torch.where(
            previous < 0, previous * sampling.repetition_penalty, previous / sampling.repetition_penalty
        )
    if sampling.temperature <= 0:
        return int(logits.argmax())
    logits /= sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, len(logits))).values[-1]
        logits[logits < kth] = float("-inf")
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        beyond = F.softmax(ordered, dim=-1).cumsum(dim=-1) > sampling.top_p
        beyond[1:] = beyond[:-1].clone()
        beyond[0] = False
        logits[order[beyond]] = float("-inf")
    return int(torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator))


@torch.inference_mode()
def stream_tokens(
    model: Transformer,
    prompt: Sequence[int],
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    stop_ids: set[int] | frozenset[int] = frozenset(),
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time (a stop id is yielded, then generation ends).

    A prompt longer than the context keeps its end; generation also ends when the
    context is full, since a model never trained past `max_seq_len` has nothing to say there.
    """
    model.eval()
    parameter = next(model.parameters())
    prompt = list(prompt)[-(model.config.max_seq_len - 1) :]
    cache = KVCache(model.config, 1, parameter.device, parameter.dtype)
    seen = torch.tensor(prompt, device=parameter.device)
    logits = model(seen[None], cache=cache).logits[0, -1]
    for _ in range(max_new_tokens):
        token = pick_next(logits, seen, sampling, generator)
        yield token
        if token in stop_ids or cache.length >= model.config.max_seq_len:
            return
        seen = torch.cat((seen, seen.new_tensor([token])))
        logits = model(seen[None, -1:], cache=cache).logits[0, -1]
