"""Serving throughput: tokens/s of `tinylm serve` for 1 and 8 concurrent clients, against generating in-process.

    .venv/bin/python bench/serve.py [--requests 8] [--max-tokens 64]

MiniMind2-Small shape (dim 512, 8 layers, vocab 6400) with seeded random weights
(`_checkpoint.py`) and a tokenizer trained on the bundled samples. The server runs as
`tinylm serve` in its own process; clients are the official `openai` package. Every
request asks for `--max-tokens` tokens from the same prompt length with a seed, so the
work per request is fixed; the reference generates the same requests in this process with
no HTTP in between.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import torch
from _checkpoint import write_checkpoint
from _cli import bench_parser

from tinylm.inference.generate import Finish, load_model, stream_text
from tinylm.model.generation import Sampling

PROMPT = "The Congress shall have power to lay and collect taxes"


def served_tokens_per_s(client: openai.OpenAI, clients: int, requests: int, max_tokens: int) -> float:
    def ask(seed: int) -> int:
        answer = client.completions.create(
            model="tinylm", prompt=PROMPT, max_tokens=max_tokens, temperature=1.0, seed=seed
        )
        return answer.usage.completion_tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(ask, range(requests)))
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_tokens = 8, 8
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = write_checkpoint(Path(directory))
        loaded = load_model(str(checkpoint))
        prompt_ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False).ids
        sampling = Sampling(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
        started = time.perf_counter()
        tokens = 0
        for seed in range(args.requests):
            finish = Finish()
            "".join(
                stream_text(loaded, prompt_ids, args.max_tokens, sampling, torch.Generator().manual_seed(seed), finish)
            )
            tokens += finish.tokens
        in_process = tokens / (time.perf_counter() - started)

        command = [
            str(Path(sys.executable).parent / "tinylm"),
            "serve",
            "--model",
            str(checkpoint),
            "--port",
            str(args.port),
        ]
        command += ["--max-tokens", str(args.max_tokens), "--workspace", str(Path(directory) / "workspace")]
        server = subprocess.Popen(command, env=os.environ, stderr=subprocess.DEVNULL)
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="none", max_retries=30)
            client.models.list()
            one = served_tokens_per_s(client, 1, args.requests, args.max_tokens)
            eight = served_tokens_per_s(client, 8, args.requests, args.max_tokens)
        finally:
            server.terminate()
            server.wait()
        print(
            f"MiniMind2-Small shape, {args.requests} requests of {args.max_tokens} tokens, CPU threads "
            f"{torch.get_num_threads()}"
        )
        print(f"in-process, one at a time   {in_process:7.1f} tokens/s")
        print(f"server, 1 client            {one:7.1f} tokens/s   {one / in_process:.2f}x in-process")
        print(
            f"server, 8 clients at once   {eight:7.1f} tokens/s   {eight / in_process:.2f}x in-process, "
            f"{eight / one:.2f}x one client"
        )


if __name__ == "__main__":
    main()
