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
    penalised = torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    penalised[seen] = True
    return int(pick_rows(logits[None], penalised[None], sampling, generator)[0])


def pick_rows(
    logits: torch.Tensor, seen: torch.Tensor | None, sampling: Sampling, generator: torch.Generator | None
) -> torch.Tensor:
    """One token id per row of (batch, vocab) logits; `seen` marks, per row, the ids the repetition penalty
    applies to."""
    logits = logits.float().clone()
    if sampling.repetition_penalty != 1.0 and seen is not None:
        penalty = sampling.repetition_penalty
        logits = torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    logits /= sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probabilities = F.softmax(ordered, dim=-1)
        beyond = probabilities.cumsum(dim=-1) - probabilities > sampling.top_p  # the top token always stays
        logits = logits.scatter(-1, order, ordered.masked_fill(beyond, float("-inf")))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


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


@torch.no_grad()
def generate_batch(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: Sampling,
    stop_ids: set[int] | frozenset[int],
    generator: torch.Generator | None,
    pad_id: int = 0,
) -> list[list[int]]:
    """Each prompt's new token ids (a stop id ends a row, and is kept), the prompts generated together.

    One forward pass per new token for the whole batch, the prompts left-padded into one KV
    cache, and a prompt given several times (a GRPO group) read once: this is what makes a
    group of completions cheap, where `stream_tokens` would pay a pass per token per
    sequence, and read the prompt once per sequence. Every row gets at most as many tokens as the
    longest prompt leaves room for in `max_seq_len`. No gradients (`no_grad`, not
    `inference_mode`: the ids go on to a training step).
    """
    longest = max(len(prompt) for prompt in prompts)
    budget = min(max_new_tokens, model.config.max_seq_len - longest)
    if budget < 1:
        raise ValueError(f"a prompt of {longest} tokens leaves no room in max_seq_len {model.config.max_seq_len}")
    cache, logits, tokens = _read_prompts(model, prompts, longest, pad_id)
    device = logits.device
    seen = None
    if sampling.repetition_penalty != 1.0:
        seen = torch.zeros(len(prompts), model.config.vocab_size, dtype=torch.bool, device=device)
        seen.scatter_(1, tokens, True)
        if cache.pads is not None:
            seen[cache.pads > 0, pad_id] = False
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    columns = []
    for position in range(budget):
        chosen = pick_rows(logits, seen, sampling, generator).masked_fill(finished, pad_id)
        columns.append(chosen)
        finished |= torch.isin(chosen, stops)
        if position == budget - 1 or bool(finished.all()):
            break
        if seen is not None:
            seen.scatter_(1, chosen[:, None], True)
        logits = model(chosen[:, None], cache=cache).logits[:, -1]
    return [_through_stop(row, stop_ids) for row in torch.stack(columns, dim=1).tolist()]


def _read_prompts(
    model: Transformer, prompts: Sequence[Sequence[int]], longest: int, pad_id: int
) -> tuple[KVCache, torch.Tensor, torch.Tensor]:
    """A KV cache holding every prompt, left-padded to `longest`, the logits after each, and the padded ids.

    Each distinct prompt is read once and its cache rows copied to every sequence that continues it: a GRPO
    group is one prompt G times.
    """
    parameter = next(model.parameters())
    distinct = list(dict.fromkeys(tuple(prompt) for prompt in prompts))
    tokens = torch.full((len(distinct), longest), pad_id, dtype=torch.long)
    for row, prompt in enumerate(distinct):
        tokens[row, longest - len(prompt) :] = torch.as_tensor(prompt, dtype=torch.long)
    tokens = tokens.to(parameter.device)
    pads = torch.tensor([longest - len(prompt) for prompt in distinct], device=parameter.device)
    cache = KVCache(model.config, len(distinct), parameter.device, parameter.dtype, pads)
    logits = model(tokens, cache=cache).logits[:, -1]
    row_of = {prompt: row for row, prompt in enumerate(distinct)}
    rows = torch.tensor([row_of[tuple(prompt)] for prompt in prompts], device=parameter.device)
    cache.select(rows)
    return cache, logits[rows], tokens[rows]


def _through_stop(ids: list[int], stop_ids: set[int] | frozenset[int]) -> list[int]:
    for index, token in enumerate(ids):
        if token in stop_ids:
            return ids[: index + 1]
    return ids
