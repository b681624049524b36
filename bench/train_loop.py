"""The whole training loop against a bare one: tokens/s of `train_model` as a real run uses it, and of a nanoGPT-style
loop over the same model, batches and optimizer.

    .venv/bin/python bench/train_loop.py [--shape demo|small|100m] [--device cpu|cuda] [--compile] [--steps 60]

The whole loop is `train_model` with everything a run does: MLflow logging every
`log_every` steps (with a progress line), validation, sample generation and a checkpoint
logged to MLflow after each shard, batches prepared ahead on a background thread. The
bare loop is what nanoGPT's `train.py` does: the same `Transformer`, seeded alike, the
same AdamW and schedule, the same windows in the same order, one `loss.backward()` and
`optimizer.step()` per step, and nothing else. Both run in this process, one after the
other, each timed from its first step to its last (the whole loop's run setup and MLflow
calls inside it included); on CUDA in bf16 autocast, MFU against `--peak-tflops`.

Shapes: demo (the demo's 4.5M model: dim 256, 4 layers, 256 tokens), small (MiniMind2-Small:
dim 512, 8 layers, 512 tokens), 100m (dim 768, 12 layers, 12 heads, 1024 tokens: ~100M with
the 6400-token vocabulary). The token shards are the bundled samples through the real
corpus, tokenizer and shards stages.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from _cli import bench_parser
from _corpus import write_bilingual_corpus

from tinylm.config import ShardsConfig, TokenizerConfig, TrainConfig
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.documents import corpus_parts
from tinylm.tokens.shards import encode_job_part, mix_shards, plan_shards
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tracking.store import use_experiment
from tinylm.training.data import open_training_data, unit_order
from tinylm.training.metrics import model_flops_utilization
from tinylm.training.optimizer import build_optimizer, build_scheduler
from tinylm.training.trainer import autocast_for, train_model

SHAPES = {
    "demo": (ModelConfig(vocab_size=6400, dim=256, n_layers=4, n_heads=8, n_kv_heads=2, max_seq_len=256), 256, 16),
    "small": (ModelConfig(vocab_size=6400, dim=512, n_layers=8, n_heads=8, n_kv_heads=2, max_seq_len=512), 512, 16),
    "100m": (ModelConfig(vocab_size=6400, dim=768, n_layers=12, n_heads=12, n_kv_heads=4, max_seq_len=1024), 1024, 16),
}


def prepare_shards(root: Path, shard_tokens: int) -> Path:
    write_bilingual_corpus(root / "corpus", copies=1)
    train_tokenizer(root / "corpus", root / "tokenizer", TokenizerConfig(vocab_size=6400, max_text_bytes=4_000_000))
    job = plan_shards(root / "corpus", root / "tokenizer", root / "shards", ShardsConfig(shard_tokens=shard_tokens))
    mix_shards(job, [encode_job_part(job, part) for part in corpus_parts(root / "corpus")])
    return root / "shards"


def bare_loop(shards: Path, config: TrainConfig, device: torch.device) -> float:
    """Seconds for every step of the whole loop's schedule, nanoGPT-style: batch, forward, backward, clip, step."""
    data = open_training_data(shards, config)
    torch.manual_seed(config.seed)
    model = Transformer(config.model).to(device).train()
    trained = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(model, config, device)
    steps = [
        min(data.units(shard) // config.batch_size, config.max_steps_per_shard) for shard in range(config.max_shards)
    ]
    scheduler = build_scheduler(optimizer, sum(steps), config)
    started = time.perf_counter()
    for shard, count in enumerate(steps):
        order = unit_order(data.units(shard), config, shard)
        for step in range(count):
            batch = data.batch(shard, order, step).to(device)
            with autocast_for(device):
                loss = trained(batch.inputs, batch.targets).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    float(loss.detach())  # wait for the device, as the whole loop's last log does
    return time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile both loops' model")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps in all, over three shards")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100 SXM: 989)")
    args = parser.parse_args()
    if args.quick:
        args.steps = 6
    model, seq_len, batch_size = SHAPES[args.shape]
    per_shard = max(args.steps // 3, 1)
    config = TrainConfig(
        model=model,
        seq_len=seq_len,
        batch_size=batch_size,
        max_shards=3,
        max_steps_per_shard=per_shard,
        warmup_steps=min(10, per_shard),
        log_every=10,
        eval_batches=2,
        sample_tokens=16,
        compile=args.compile,
        device=args.device,
        peak_tflops=args.peak_tflops,
    )
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        shards = prepare_shards(root, shard_tokens=per_shard * batch_size * seq_len + 1)
        bare = bare_loop(shards, config, device)
        use_experiment(config.experiment, root / "workspace")  # the store's creation is a workspace's, not a run's
        started = time.perf_counter()
        result = train_model(shards, root / "workspace", config)
        whole = time.perf_counter() - started
    tokens = result["steps"] * batch_size * seq_len
    network = Transformer(model)
    print(
        f"shape {args.shape} ({network.num_parameters() / 1e6:.1f}M parameters), {args.device}, compile "
        f"{args.compile}, {tokens} tokens"
    )
    for name, seconds in (("bare loop", bare), ("whole loop (train_model)", whole)):
        line = f"{name:26s} {seconds:7.1f} s  {tokens / seconds:9.0f} tokens/s"
        if device.type == "cuda":
            line += f"  MFU {model_flops_utilization(network, config, tokens / seconds):.1%}"
        print(line)
    print(f"whole loop at {bare / whole:.2f}x the bare loop's throughput")


if __name__ == "__main__":
    main()
