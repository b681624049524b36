"""Training throughput: tinylm's Transformer against transformers' LlamaForCausalLM at the same shape.

    .venv/bin/python bench/train.py [--seq-len 256] [--batch-size 4] [--steps 6] [--device cpu]

MiniMind2-Small dimensions (dim 512, 8 layers, 8 query heads, 2 KV heads, SwiGLU 1408,
tied embeddings, vocab 6400). Both models get the same initial weights (ours, exported
by `export_hf`'s name mapping), the same AdamW loop and the same batches; each runs in
its own process so peak memory is its own, alternating Llama and ours `--rounds` times,
and the fastest run of each counts (on a shared 2-core machine the order alone moves
a single run by 3%). On CUDA both run in bf16 autocast, with
`--compile` through `torch.compile`, and MFU is reported against `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from _cli import bench_parser

from tinylm.model.config import ModelConfig
from tinylm.model.hf_mapping import hf_config, hf_state_dict
from tinylm.model.transformer import Transformer
from tinylm.peak_memory import peak_resident

SHAPE = ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2, max_seq_len=1024)
WARMUP_STEPS = 2


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    ours = Transformer(SHAPE)
    if kind == "tinylm":
        return ours
    import transformers

    config = transformers.LlamaConfig(**hf_config(SHAPE, eos_id=0))
    llama = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa", torch_dtype=torch.float32)
    llama.load_state_dict(hf_state_dict(ours.state_dict(), SHAPE), strict=False)
    llama.tie_weights()
    return llama


def loss_of(kind: str, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if kind == "tinylm":
        return model(inputs, targets).loss
    logits = model(input_ids=inputs).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def run(kind: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    model = build(kind).to(device).train()
    parameters = sum(p.numel() for p in model.parameters())
    if args.compile:
        model = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(1)
    batches = [
        torch.randint(0, SHAPE.vocab_size, (args.batch_size, args.seq_len + 1), generator=generator)
        for _ in range(args.steps + WARMUP_STEPS)
    ]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    with peak_resident() as memory:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for batch in batches:
            batch = batch.to(device)
            started = time.perf_counter()
            with autocast:
                loss = loss_of(kind, model, batch[:, :-1], batch[:, 1:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    step = sum(times[WARMUP_STEPS:]) / args.steps
    tokens_per_s = args.batch_size * args.seq_len / step
    result = {
        "model": kind,
        "parameters": parameters,
        "step_s": step,
        "tokens_per_s": tokens_per_s,
        "loss": float(loss),
    }
    result["peak_rss_growth_mb"] = (memory["peak"] - memory["before"]) / 1e6
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 1e6
        flops_per_token = 6 * parameters + 12 * SHAPE.n_layers * SHAPE.dim * args.seq_len
        result["mfu"] = flops_per_token * tokens_per_s / (args.peak_tflops * 1e12)
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each model, alternating; the fastest counts")
    parser.add_argument("--only", choices=["tinylm", "llama"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 2, 1
    if args.only:
        print(json.dumps(run(args.only, args)))
        return
    results: dict[str, list[dict]] = {"tinylm": [], "llama": []}
    for kind in ["llama", "tinylm"] * args.rounds:
        output = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--only", kind], check=True, capture_output=True, text=True
        ).stdout
        results[kind].append(json.loads(output.strip().splitlines()[-1]))
    best = {kind: max(runs, key=lambda r: r["tokens_per_s"]) for kind, runs in results.items()}
    print(f"device {args.device}, seq {args.seq_len}, batch {args.batch_size}, compile {args.compile}")
    for kind, result in best.items():
        extra = f"  MFU {result['mfu']:.1%}  peak GPU {result['peak_gpu_mb']:.0f} MB" if "mfu" in result else ""
        print(
            f"{kind:7s} {result['parameters'] / 1e6:5.1f}M params  step {result['step_s']:.3f} s  "
            f"{result['tokens_per_s']:8.0f} tokens/s  peak RSS growth {result['peak_rss_growth_mb']:.0f} MB{extra}"
        )
    print(f"tinylm / Llama tokens/s: {best['tinylm']['tokens_per_s'] / best['llama']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
