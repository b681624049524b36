import dataclasses

import pytest
import torch

from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling, generate_batch, pick_next, pick_rows, stream_tokens
from tinylm.model.transformer import KVCache, Transformer

TINY = ModelConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
TINY_MOE = dataclasses.replace(
    TINY, moe=True, n_routed_experts=4, n_shared_experts=1, experts_per_token=2, moe_hidden_dim=32
)


def test_minimind2_small_shape_has_about_26m_parameters():
    model = Transformer(ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2))
    assert model.config.ffn_dim == 1408
    assert 25_500_000 < model.num_parameters() < 26_500_000


def test_embeddings_are_tied_and_kv_heads_are_grouped():
    model = Transformer(TINY)
    assert model.output.weight is model.tok_embeddings.weight
    attention = model.layers[0].attention
    assert attention.wqkv.out_features == 32 + 2 * 16, "8 query heads' worth of dims, 2 KV heads' for keys and values"


@pytest.mark.parametrize("config", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_attention_is_causal(config):
    torch.manual_seed(0)
    model = Transformer(config).eval()
    tokens = torch.randint(0, 97, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 97
    before, after = model(tokens).logits, model(changed).logits
    assert torch.allclose(before[:, :8], after[:, :8], atol=1e-6)
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_loss_mask_restricts_the_loss_to_marked_positions():
    torch.manual_seed(0)
    model = Transformer(TINY)
    tokens, targets = torch.randint(0, 97, (2, 10)), torch.randint(0, 97, (2, 10))
    mask = torch.zeros(2, 10)
    mask[:, 5:] = 1
    output = model(tokens, targets, mask)
    expected = torch.nn.functional.cross_entropy(output.logits[:, 5:].flatten(0, 1), targets[:, 5:].flatten())
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_mixture_of_experts_adds_experts_and_a_balance_loss_that_trains_the_gate():
    torch.manual_seed(0)
    dense, moe = Transformer(TINY), Transformer(TINY_MOE)
    per_expert = 3 * 32 * 32
    assert moe.num_parameters() - dense.num_parameters() == 2 * (
        4 * per_expert + 4 * 32 + per_expert - 3 * 32 * TINY.ffn_dim
    )
    tokens, targets = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    output = moe(tokens, targets)
    plain = torch.nn.functional.cross_entropy(output.logits.flatten(0, 1), targets.flatten())
    assert output.aux_loss >= 1.0 - 1e-5, "1 is the value at a perfectly even load"
    assert torch.allclose(output.loss, plain + TINY_MOE.aux_loss_weight * output.aux_loss, atol=1e-6)
    output.loss.backward()
    assert moe.layers[0].feed_forward.gate.weight.grad.abs().sum() > 0
    assert all(expert.w13.weight.grad is not None for expert in moe.layers[0].feed_forward.experts)


@pytest.mark.parametrize("config", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_kv_cache_gives_the_logits_of_a_full_forward(config):
    torch.manual_seed(0)
    model = Transformer(config).eval()
    tokens = torch.randint(0, 97, (1, 20))
    full = model(tokens).logits
    cache = KVCache(config, 1, torch.device("cpu"), torch.float32)
    pieces = [model(tokens[:, :8], cache=cache).logits, model(tokens[:, 8:13], cache=cache).logits]
    pieces += [model(tokens[:, i : i + 1], cache=cache).logits for i in range(13, 20)]
    assert cache.length == 20
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_greedy_streaming_matches_recomputing_the_whole_sequence_and_stops():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    prompt = [1, 2, 3]
    streamed = list(stream_tokens(model, prompt, 10, Sampling(temperature=0)))
    sequence = list(prompt)
    for _ in range(10):
        sequence.append(int(model(torch.tensor([sequence])).logits[0, -1].argmax()))
    assert streamed == sequence[3:]
    stop = streamed[-1]
    assert (
        list(stream_tokens(model, prompt, 10, Sampling(temperature=0), stop_ids={stop}))
        == streamed[: streamed.index(stop) + 1]
    )
    assert len(list(stream_tokens(model, list(range(40)), 10, Sampling(temperature=0)))) == 2, (
        "31 prompt tokens kept, then the context fills"
    )


def test_sampling_filters_and_repetition_penalty():
    logits = torch.tensor([4.0, 3.0, 2.0, -1.0])
    seen = torch.tensor([0])
    assert pick_next(logits, seen, Sampling(temperature=0, repetition_penalty=3.0), None) == 1
    draws = {
        pick_next(logits, seen, Sampling(temperature=1.0, top_k=2, top_p=1.0), torch.Generator().manual_seed(i))
        for i in range(200)
    }
    assert draws == {0, 1}
    draws = {
        pick_next(logits, seen, Sampling(temperature=1.0, top_k=0, top_p=0.5), torch.Generator().manual_seed(i))
        for i in range(50)
    }
    assert draws == {0}


@pytest.mark.parametrize("config", [TINY, TINY_MOE], ids=["dense", "moe"])
def test_left_padded_rows_in_one_cache_give_each_rows_own_logits(config):
    torch.manual_seed(0)
    model = Transformer(config).eval()
    rows = [torch.randint(0, 97, (length,)) for length in (3, 9, 6)]
    pads = torch.tensor([9 - len(row) for row in rows])
    batch = torch.stack([torch.cat((torch.zeros(9 - len(row), dtype=torch.long), row)) for row in rows])
    cache = KVCache(config, 3, torch.device("cpu"), torch.float32, pads)
    prefill = model(batch, cache=cache).logits
    following = torch.randint(0, 97, (3, 4))
    steps = torch.cat([model(following[:, i : i + 1], cache=cache).logits for i in range(4)], dim=1)
    for index, row in enumerate(rows):
        alone = model(torch.cat((row, following[index]))[None]).logits[0]
        assert torch.allclose(prefill[index, pads[index] :], alone[: len(row)], atol=1e-5)
        assert torch.allclose(steps[index], alone[len(row) :], atol=1e-5)


def test_batched_generation_is_each_prompts_own_greedy_stream_and_stops_per_row():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    for parameter in model.parameters():  # random init repeats its input; larger weights make varied streams
        torch.nn.init.normal_(parameter, std=0.3)
    prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [42], [5, 6, 7]]  # the first read once, continued twice
    greedy = Sampling(temperature=0)
    alone = [list(stream_tokens(model, prompt, 12, greedy)) for prompt in prompts]
    assert generate_batch(model, prompts, 12, greedy, set(), None) == alone
    stop = alone[1][4]
    stopped = generate_batch(model, prompts, 12, greedy, {stop}, None)
    assert stopped == [list(stream_tokens(model, prompt, 12, greedy, {stop})) for prompt in prompts]
    assert stopped[1][-1] == stop and len(stopped[1]) <= 5
    group = generate_batch(
        model, [[5, 6, 7]] * 8, 12, Sampling(temperature=1.0), set(), torch.Generator().manual_seed(0)
    )
    assert len({tuple(row) for row in group}) > 1, "a group's copies of one prompt sample apart"


def test_batched_sampling_draws_each_row_from_its_own_filtered_distribution():
    logits = torch.tensor([[4.0, 3.0, 2.0, -1.0], [-1.0, 2.0, 3.0, 4.0]])
    draws = {
        tuple(pick_rows(logits, None, Sampling(temperature=1.0, top_k=2, top_p=1.0), torch.Generator().manual_seed(i)))
        for i in range(200)
    }
    assert {int(first) for first, _ in draws} == {0, 1} and {int(second) for _, second in draws} == {2, 3}
