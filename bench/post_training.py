"""Post-training step cost: a DPO step against an SFT step at the same shape, with and without LoRA.

    .venv/bin/python bench/post_training.py [--seq-len 256] [--pairs 4] [--steps 4] [--device cpu]

MiniMind2-Small dimensions (dim 512, 8 layers, vocab 6400). An SFT step trains on
2 x `--pairs` conversations; a DPO step on `--pairs` pairs, the same 2 x `--pairs`
sequences, with the reference's log-probabilities precomputed (what `precompute_reference`
does: nothing but the policy runs) or computed by a frozen reference model on each batch.
Every step is a whole optimizer step through tinylm's objectives (forward, loss, backward,
clipping, AdamW); the fastest of `--rounds` runs counts. Prints tokens/s and each
method's time per step relative to full SFT.
"""

from __future__ import annotations

import argparse
import time

import torch
from _cli import bench_parser

from tinylm.config import LoraConfig, TrainConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.training.data import Batch
from tinylm.training.methods.dpo import Preference, sequence_logps
from tinylm.training.methods.pretrain import LanguageModeling
from tinylm.training.optimizer import build_optimizer
from tinylm.weights.adapters import with_adapters

SHAPE = ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2, max_seq_len=1024)


def batch_of(sequences: int, seq_len: int, device: torch.device) -> Batch:
    """Token ids with a prompt (first quarter, not trained) and a reply (the rest), as chat data gives them."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, SHAPE.vocab_size, (sequences, seq_len + 1), generator=generator)
    weights = torch.ones(sequences, seq_len)
    weights[:, : seq_len // 4] = 0
    return Batch(tokens[:, :-1], tokens[:, 1:], weights).to(device)


def seconds_per_step(method: str, lora: bool, args: argparse.Namespace, device: torch.device) -> float:
    torch.manual_seed(0)
    model: torch.nn.Module = Transformer(SHAPE).to(device)
    if lora:
        model = with_adapters(model, LoraConfig(rank=8))
    optimizer = build_optimizer(model, TrainConfig(), device)
    batch = batch_of(2 * args.pairs, args.seq_len, device)
    if method == "sft":
        objective = LanguageModeling()
    else:
        reference = (
            Transformer(SHAPE).to(device).eval().requires_grad_(False) if method == "dpo, live reference" else None
        )
        fixed = torch.full((2 * args.pairs,), -500.0, device=device)

        def reference_logps(batch: Batch) -> torch.Tensor:
            if reference is None:
                return fixed
            with torch.no_grad():
                return sequence_logps(reference(batch.inputs).logits, batch.targets, batch.weights)

        objective = Preference(0.1, reference_logps)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    trainable = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = objective(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        float(loss.detach())

    step()
    best = float("inf")
    for _ in range(args.rounds):
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        best = min(best, (time.perf_counter() - started) / args.steps)
    return best


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 1, 1
    device = torch.device(args.device)
    tokens = 2 * args.pairs * args.seq_len
    print(
        f"{device.type}, dim {SHAPE.dim} x {SHAPE.n_layers} layers, {2 * args.pairs} sequences of {args.seq_len} "
        "tokens per step"
    )
    print("method                      LoRA  s/step  tokens/s  time vs full SFT")
    baseline = None
    for method in ("sft", "dpo, precomputed reference", "dpo, live reference"):
        for lora in (False, True):
            seconds = seconds_per_step(method, lora, args, device)
            baseline = baseline or seconds
            print(
                f"{method:27s} {'yes' if lora else 'no ':4s} {seconds:7.2f} {tokens / seconds:9.0f} "
                f"{seconds / baseline:12.2f}x"
            )


if __name__ == "__main__":
    main()
