"""GRPO rollout speed: a group's completions generated together against one sequence at a time, and a step's split.

    .venv/bin/python bench/grpo.py [--generations 8] [--prompts 1] [--tokens 64] [--device cpu] [--quick]

MiniMind2-Small's dimensions (dim 512, 8 layers, vocab 6400), random weights, prompts
from the GSM8K excerpt in tests/data encoded with the chat template. The reference way is
what `tinylm generate` does: `stream_tokens`, one sequence at a time with its own KV cache,
once per completion. The batched way is what the GRPO rollout does: `generate_batch`,
every completion of every prompt in one left-padded cache, one forward pass per token.
Both sample (temperature 1) `--tokens` new tokens per completion with no stop token, so
they generate the same number of tokens. Then one whole GRPO optimizer step (rollout,
rewards, loss, backward, AdamW) is timed in its two parts: generation and optimisation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from _cli import bench_parser
from _timing import best_of

from tinylm.config import TokenizerConfig
from tinylm.model.config import ModelConfig
from tinylm.model.generation import Sampling, generate_batch, stream_tokens
from tinylm.model.transformer import Transformer
from tinylm.tokens.chat_template import ChatEncoder
from tinylm.tokens.prompts import PromptsManifest
from tinylm.tokens.tokenizer import bpe_trainer, new_tokenizer
from tinylm.tokens.tokenizer_files import EOS, IM_END, PAD
from tinylm.training.data import Batch, PromptData
from tinylm.training.methods.grpo import GroupRelative, GrpoConfig
from tinylm.training.metrics import MetricsLogger
from tinylm.training.optimizer import build_optimizer
from tinylm.training.rewards import load_rewards

GSM8K = Path(__file__).resolve().parents[1] / "tests" / "data" / "gsm8k" / "test-excerpt.jsonl"


def prompts_and_tokenizer(count: int):
    """`count` GSM8K questions as chat prompts, and the byte-level tokenizer (trained on them) that encoded them."""
    records = [json.loads(line) for line in GSM8K.read_text("utf-8").splitlines()]
    tokenizer = new_tokenizer()
    tokenizer.train_from_iterator([r["question"] for r in records], bpe_trainer(TokenizerConfig(vocab_size=2000)))
    encoder = ChatEncoder(tokenizer)
    chosen = records[:count]
    conversations = [[{"role": "user", "content": r["question"]}] for r in chosen]
    encoded = encoder.encode(conversations, generation_prompt=True)
    return [{"line": i + 1, "prompt": r["question"], "answer": r["answer"], "ids": e.ids}
            for i, (r, e) in enumerate(zip(chosen, encoded))], tokenizer  # fmt: skip


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--prompts", type=int, default=1, help="prompts per batch")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per completion")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.tokens = 16
    device = torch.device(args.device)
    records, tokenizer = prompts_and_tokenizer(args.prompts)
    shape = ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2, max_seq_len=1024)
    torch.manual_seed(0)
    model = Transformer(shape).to(device).eval()
    sampling = Sampling(temperature=1.0, top_k=0, top_p=1.0)
    prompts = [record["ids"] for record in records for _ in range(args.generations)]
    tokens = len(prompts) * args.tokens
    runs = 1 if args.quick else 3

    def one_at_a_time() -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        for prompt in prompts:
            assert len(list(stream_tokens(model, prompt, args.tokens, sampling, frozenset(), generator))) == args.tokens

    def batched() -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        rows = generate_batch(model, prompts, args.tokens, sampling, frozenset(), generator)
        assert all(len(row) == args.tokens for row in rows)

    alone, together = best_of(runs, one_at_a_time), best_of(runs, batched)
    longest = max(len(prompt) for prompt in prompts)
    print(f"{len(records)} prompt(s) x G={args.generations}, prompts up to {longest} tokens, {args.tokens} new tokens "
          f"each, MiniMind2-Small shape on {device}")  # fmt: skip
    print(f"one sequence at a time (tinylm generate): {tokens / alone:8.1f} tokens/s")
    print(f"batched group rollout                  : {tokens / together:8.1f} tokens/s  ({alone / together:.1f}x)")

    config = GrpoConfig(
        batch_size=args.prompts, num_generations=args.generations, max_prompt_tokens=longest,
        max_completion_tokens=args.tokens, beta=0.0, top_k=0,
    )  # fmt: skip
    manifest = PromptsManifest(
        stage="prompts", fingerprint="bench", input="bench", tokenizer_sha256="", tokenizer_dir="",
        vocab_size=tokenizer.get_vocab_size(), eos_id=tokenizer.token_to_id(EOS),
        im_end_id=tokenizer.token_to_id(IM_END), pad_id=tokenizer.token_to_id(PAD),
    )  # fmt: skip
    data = PromptData(Path("."), manifest, config, records)
    rewards = load_rewards(["accuracy", "length"], None, args.tokens)
    objective = GroupRelative(config, rewards, data, tokenizer, None, MetricsLogger(False))
    optimizer = build_optimizer(model, config, device)
    batch = Batch(torch.zeros((len(records), 0), dtype=torch.long, device=device), torch.zeros(0), None,
                  torch.arange(len(records)).numpy())  # fmt: skip
    generation = optimisation = float("inf")
    for step in range(runs):
        model.eval()
        started = time.perf_counter()
        with torch.no_grad():
            made, _ = objective.rollout(model, batch, step)
        sampled = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = objective(model, made)
        loss.backward()
        optimizer.step()
        generation = min(generation, sampled - started)
        optimisation = min(optimisation, time.perf_counter() - sampled)
    total = generation + optimisation
    print(f"one GRPO step: {total:.2f} s = generation {generation:.2f} s ({generation / total:.0%}) + "
          f"optimisation {optimisation:.2f} s ({optimisation / total:.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
