import torch

from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer

TINY = ModelConfig(vocab_size=97, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16)


def test_minimind2_small_shape_has_about_26m_parameters():
    model = Transformer(ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2))
    assert model.config.ffn_dim == 1408
    assert 25_500_000 < model.num_parameters() < 26_500_000


def test_embeddings_are_tied_and_kv_heads_are_grouped():
    model = Transformer(TINY)
    assert model.output.weight is model.tok_embeddings.weight
    attention = model.layers[0].attention
    assert attention.wq.out_features == 32 and attention.wk.out_features == attention.wv.out_features == 16


def test_attention_is_causal():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    tokens = torch.randint(0, 97, (1, 12))
    changed = tokens.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 97
    before, _ = model(tokens)
    after, _ = model(changed)
    assert torch.allclose(before[:, :8], after[:, :8], atol=1e-6)
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_loss_mask_restricts_the_loss_to_marked_positions():
    torch.manual_seed(0)
    model = Transformer(TINY)
    tokens, targets = torch.randint(0, 97, (2, 10)), torch.randint(0, 97, (2, 10))
    mask = torch.zeros(2, 10)
    mask[:, 5:] = 1
    logits, masked = model(tokens, targets, mask)
    expected = torch.nn.functional.cross_entropy(logits[:, 5:].flatten(0, 1), targets[:, 5:].flatten())
    assert torch.allclose(masked, expected, atol=1e-6)


def test_greedy_generation_is_deterministic_and_stops():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    prompt = torch.tensor([[1, 2, 3]])
    first = model.generate(prompt, 20, temperature=0)
    assert torch.equal(first, model.generate(prompt, 20, temperature=0))
    assert first.shape == (1, 23)
    stop = int(first[0, 3])
    assert model.generate(prompt, 20, temperature=0, stop_ids={stop}).shape == (1, 4)
