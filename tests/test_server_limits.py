"""`tinylm serve` under abuse: bodies counted as they arrive, the key checked first, a bound on generations at once
and on each request's time, met by a real server process and the official `openai` client."""

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch

from tests.helpers import free_port, wait_for_http
from tinylm.config import TokenizerConfig
from tinylm.inference.admission import ApiError, Deadline, GenerationSlots
from tinylm.model.config import ModelConfig
from tinylm.model.transformer import Transformer
from tinylm.storage.checkpoints import save_checkpoint
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE

KEY = "limits-key"
TIME_LIMIT_S = 3
# A long context and many thin layers: a reply of thousands of tokens takes far longer than the time limit on any
# CPU, so a test can hold a generation slot for as long as it needs.
LONG = ModelConfig(vocab_size=600, dim=32, n_layers=8, n_heads=4, n_kv_heads=2, max_seq_len=8192)


@pytest.fixture(scope="module")
def server(small_corpus, tmp_path_factory):
    """A server of one generation at once and one waiting, with a short time limit; yields (root URL, client)."""
    root = tmp_path_factory.mktemp("long-model")
    train_tokenizer(small_corpus, root / "tokenizer", TokenizerConfig(vocab_size=LONG.vocab_size))
    torch.manual_seed(0)
    meta = {"model_config": dataclasses.asdict(LONG)}
    state = {"model": Transformer(LONG).state_dict()}
    checkpoint = save_checkpoint(
        root / "checkpoint", state, meta, {TOKENIZER_FILE: root / "tokenizer" / TOKENIZER_FILE}
    )
    port = free_port()
    command = [str(Path(sys.executable).parent / "tinylm"), "serve", "--model", str(checkpoint), "--port", str(port)]
    command += ["--workspace", str(root / "workspace"), "--max-tokens", "8000", "--max-body-bytes", "20000"]
    command += ["--max-running", "1", "--max-waiting", "1", "--request-timeout", str(TIME_LIMIT_S)]
    process = subprocess.Popen(command, env=os.environ | {"TINYLM_API_KEY": KEY}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/", process)
        yield url, openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    finally:
        process.terminate()
        process.wait(timeout=30)


def raw_request(url: str, head: str, chunks: list[bytes]) -> str:
    """Send a request head and a chunked body over a plain socket, as much of it as the server takes, and return
    the status line the server answers with: an HTTP client would hide when the server stopped reading."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode() + b"\r\n")
        try:
            for chunk in chunks:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed the connection before the body ended, as it should
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            received = connection.recv(65536)
            if not received:
                break
            answer += received
        return answer.decode("latin-1")


def _content_length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    return next((int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length:")), 0)


def test_the_key_is_checked_before_the_body_and_a_chunked_body_is_counted_as_it_arrives(server):
    url, _ = server
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: "
        "chunked\r\n"
    )
    # No key, and a body that never comes: the answer cannot wait for it.
    answer = raw_request(url, head, [])
    assert answer.startswith("HTTP/1.1 401"), answer
    filler = b'{"prompt": "' + b"x" * 4000
    too_long = raw_request(url, head + f"Authorization: Bearer {KEY}\r\n", [filler] * 10 + [b'"}'])
    assert too_long.startswith("HTTP/1.1 413") and "over 20000 bytes" in too_long, too_long
    small = raw_request(url, head + f"Authorization: Bearer {KEY}\r\n", [b'{"prompt": "The", ', b'"max_tokens": 2}'])
    assert small.startswith("HTTP/1.1 200"), "a chunked body within the limit is read whole"


def wait_until(url: str, **counts: int) -> None:
    deadline = time.monotonic() + 60
    while {name: httpx.get(f"{url}/health").json()[name] for name in counts} != counts:
        assert time.monotonic() < deadline, f"/health never showed {counts}"
        time.sleep(0.02)


def test_a_burst_is_served_in_turn_or_told_to_retry_and_a_gone_client_frees_its_slot(server):
    url, client = server
    held = client.completions.create(model="tinylm", prompt="The", max_tokens=8000, temperature=0, stream=True)
    next(iter(held))
    wait_until(url, running=1, waiting=0)
    queued: dict[str, openai.types.Completion] = {}
    waiter = threading.Thread(
        target=lambda: queued.update(reply=client.completions.create(model="tinylm", prompt="The", max_tokens=4))
    )
    waiter.start()
    wait_until(url, running=1, waiting=1)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="tinylm", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert (
        refused.value.code == "server_busy"
        and "busy (1/1 generating, 1/1 waiting): retry later" in refused.value.message
    )
    assert refused.value.response.headers["retry-after"] == "1", "OpenAI clients wait this long before they retry"
    held.close()
    waiter.join(timeout=60)
    assert queued["reply"].usage.completion_tokens == 4, "the waiting request got the slot the closed stream left"
    wait_until(url, running=0, waiting=0)


def test_a_reply_that_runs_out_of_time_ends_as_a_cut_one_does(server):
    _, client = server
    started = time.monotonic()
    reply = client.completions.create(model="tinylm", prompt="The", max_tokens=8000, temperature=0)
    took = time.monotonic() - started
    assert reply.choices[0].finish_reason == "length" and 0 < reply.usage.completion_tokens < 8000
    assert TIME_LIMIT_S <= took < TIME_LIMIT_S + 5, f"cut after {took:.1f} s"


def test_the_queue_is_bounded_in_length_and_in_time():
    async def scenario() -> list[str]:
        slots = GenerationSlots(running=1, waiting=1)
        outcomes = []

        async def ask(hold_s: float, limit_s: float) -> None:
            try:
                async with slots.slot(Deadline(time.monotonic(), limit_s)):
                    outcomes.append("ran")
                    await asyncio.sleep(hold_s)
            except ApiError as refused:
                outcomes.append(f"{refused.status} {refused.message}")

        first = asyncio.create_task(ask(0.5, 10))
        await asyncio.sleep(0.05)
        waits_too_long = asyncio.create_task(ask(0, 0.1))
        await asyncio.sleep(0.01)
        await ask(0, 10)
        await asyncio.gather(first, waits_too_long)
        await ask(0, 10)
        assert (slots.busy, slots.queued) == (0, 0)
        return outcomes

    assert asyncio.run(scenario()) == [
        "ran",
        "429 the server is busy (1/1 generating, 1/1 waiting): retry later",
        "429 the server is busy (no generation slot came free within the time limit of 0.1 s): retry later",
        "ran",
    ]


def test_a_deadline_cuts_a_stream_after_the_piece_that_reached_it():
    deadline = Deadline(time.monotonic(), 60)

    def pieces() -> object:
        yield from "ab"
        deadline.at = time.monotonic()
        yield from "cd"

    assert "".join(deadline.cut(pieces())) == "abc"
    assert "".join(Deadline(time.monotonic(), 60).cut(iter("abcd"))) == "abcd"
