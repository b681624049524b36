"""A burst on `tinylm serve`: 50 streaming clients at once, what each gets, and the server's peak memory.

    .venv/bin/python bench/serve_burst.py [--clients 50] [--shape demo|minimind2-small]

The model has the demo's shape (configs/demo.yaml) with seeded random weights
(`_checkpoint.py`); every client streams a reply as long as the context allows, so each
generation holds the most it can. The server runs with its default limits (4 generations
at once, 32 waiting, 120 s per request); the reference is the same server with no bound
(every client generating at once, as before the limits). Each client is the official
`openai` package with its retries off, so a 429 is seen as the client meets it. Peak memory
is the server process's high-water mark (VmHWM).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import openai
from _checkpoint import SHAPE, write_checkpoint
from _cli import bench_parser

from tinylm.config import PipelineConfig, load_yaml
from tinylm.model.config import ModelConfig

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
PROMPT = "The Congress shall have power to lay and collect taxes"


def demo_shape() -> ModelConfig:
    config = load_yaml(DEMO, PipelineConfig)
    assert isinstance(config, PipelineConfig)
    return replace(config.train.model, vocab_size=config.tokenizer.vocab_size)


def memory_kib(pid: int, field: str) -> int:
    """`VmRSS` (now) or `VmHWM` (the peak) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def burst(client: openai.OpenAI, clients: int, max_tokens: int) -> tuple[Counter, float, str]:
    """Every client at once (a barrier); each one's outcome, the time until the last one ended, a refusal's words."""
    outcomes: Counter = Counter()
    refusal = ""
    start = threading.Barrier(clients)

    def ask(seed: int) -> None:
        nonlocal refusal
        start.wait()
        try:
            stream = client.completions.create(
                model="tinylm", prompt=PROMPT, max_tokens=max_tokens, seed=seed, stream=True
            )
            reasons = [chunk.choices[0].finish_reason for chunk in stream]
            outcomes["answered" if reasons and reasons[-1] in ("stop", "length") else "cut short"] += 1
        except openai.RateLimitError as refused:
            outcomes["429"] += 1
            refusal = refused.message
        except openai.APIError as error:
            outcomes[f"other: {type(error).__name__}"] += 1

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started, refusal


def serve_and_burst(
    checkpoint: Path, workspace: Path, port: int, limits: list[str], clients: int, max_tokens: int
) -> dict:
    command = [str(Path(sys.executable).parent / "tinylm"), "serve", "--model", str(checkpoint), "--port", str(port)]
    command += ["--workspace", str(workspace), "--max-tokens", str(max_tokens), *limits]
    server = subprocess.Popen(command, env=os.environ, stderr=subprocess.DEVNULL)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
        for _ in range(600):
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                time.sleep(0.1)
        idle = memory_kib(server.pid, "VmRSS")
        outcomes, took, refusal = burst(client, clients, max_tokens)
        peak = memory_kib(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait()
    return {"outcomes": outcomes, "took": took, "idle": idle, "peak": peak, "refusal": refusal}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--shape", choices=["demo", "minimind2-small"], default="demo")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    shape = demo_shape() if args.shape == "demo" else SHAPE
    if args.quick:
        args.clients, shape = 12, replace(shape, max_seq_len=64)
    max_tokens = shape.max_seq_len - 16  # the prompt is 10-odd tokens: the rest of the context
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = write_checkpoint(Path(directory), shape)
        workspace = Path(directory) / "workspace"
        bounded = serve_and_burst(checkpoint, workspace, args.port, [], args.clients, max_tokens)
        unbounded_limits = ["--max-running", str(args.clients), "--max-waiting", "0"]
        unbounded = serve_and_burst(checkpoint, workspace, args.port, unbounded_limits, args.clients, max_tokens)
    print(
        f"{args.shape} shape ({shape.dim} x {shape.n_layers} layers, context {shape.max_seq_len}), {args.clients} "
        "streaming clients"
    )
    print(f"at once, each asking for {max_tokens} tokens; peak is the server's VmHWM, idle its RSS before the burst")
    for name, run in (("default limits (4 + 32 waiting)", bounded), (f"no bound ({args.clients} at once)", unbounded)):
        seen = ", ".join(f"{count} {outcome}" for outcome, count in sorted(run["outcomes"].items()))
        memory = f"idle {run['idle'] / 1024:6.0f} MiB  peak {run['peak'] / 1024:6.0f} MiB"
        print(f"{name:34} {seen:28} {memory}  all done in {run['took']:5.1f} s")
    grown = (bounded["peak"] - bounded["idle"]) / max(unbounded["peak"] - unbounded["idle"], 1)
    print(f"memory the burst added, bounded / unbounded: {grown:.2f}x")
    if bounded["refusal"]:
        print(f"a refused client read: {bounded['refusal']}")
    answered_or_refused = bounded["outcomes"]["answered"] + bounded["outcomes"]["429"]
    assert sum(bounded["outcomes"].values()) == answered_or_refused, "every client gets an answer or a 429"


if __name__ == "__main__":
    main()
