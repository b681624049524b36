"""`tinylm serve` as lm-evaluation-harness sees it: its `local-completions` model scores a served model over HTTP
(`/v1/completions` with `echo` and `logprobs`) and gets the accuracy `tinylm eval` gets in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import lm_eval
import pytest
import torch
from lm_eval.tasks import TaskManager

from tests.helpers import free_port, tiny_train_config, wait_for_http
from tinylm.config import EvalConfig
from tinylm.evaluation.benchmarks import run_benchmarks, task_config
from tinylm.export.hf import export_hf
from tinylm.inference.generate import load_model
from tinylm.model.config import ModelConfig
from tinylm.storage.benchmark_files import local_tasks
from tinylm.storage.checkpoints import newest_local_checkpoint
from tinylm.storage.layout import run_checkpoints
from tinylm.training.trainer import train_model

CMMLU = Path(__file__).parent / "data" / "cmmlu"
KEY = "harness-key"
# A context longer than any CMMLU prompt here, so that neither the harness's in-process model nor its HTTP model
# cuts one (they cut at lengths one token apart).
CONTEXT = 1024


@pytest.fixture(scope="module")
def served(prefect_api, shards_dir, module_workspace):
    """A trained tiny model behind `tinylm serve`; yields (completions URL, run id)."""
    model = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=CONTEXT)
    run_id = train_model(shards_dir, module_workspace, tiny_train_config(model=model, max_shards=1))["run_id"]
    port = free_port()
    command = [str(Path(sys.executable).parent / "tinylm"), "serve", "--model", run_id]
    command += ["--workspace", str(module_workspace), "--port", str(port), "--max-tokens", "16"]
    server = subprocess.Popen(command, env=os.environ | {"TINYLM_API_KEY": KEY}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server)
        yield f"http://127.0.0.1:{port}/v1/completions", run_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def completion(url: str, **body: object) -> httpx.Response:
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def test_echo_and_logprobs_are_the_models_own_log_probabilities(served, module_workspace):
    url, run_id = served
    loaded = load_model(run_id, module_workspace)
    ids = loaded.tokenizer.encode("美利坚合众国宪法 We the People").ids
    reply = completion(url, prompt=ids, max_tokens=1, temperature=0, echo=True, logprobs=2).json()
    (choice,) = reply["choices"]
    logprobs = choice["logprobs"]
    with torch.no_grad():
        expected = torch.log_softmax(loaded.model(torch.tensor([ids])).logits[0].float(), dim=-1)
    assert len(logprobs["token_logprobs"]) == len(ids) + 1, "the prompt echoed, and the generated token"
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    for position in range(1, len(ids)):
        assert logprobs["token_logprobs"][position] == pytest.approx(expected[position - 1, ids[position]].item())
        assert max(logprobs["top_logprobs"][position].values()) == pytest.approx(expected[position - 1].max().item())
    assert logprobs["token_logprobs"][-1] == pytest.approx(expected[-1].max().item()), "greedy: the likeliest"
    assert choice["text"].startswith(loaded.tokenizer.decode(ids)) and logprobs["text_offset"][0] == 0
    scored = completion(url, prompt="We the People", max_tokens=0, echo=True, logprobs=0).json()["choices"][0]
    assert scored["text"] == "We the People" and all(top == {} for top in scored["logprobs"]["top_logprobs"][1:])
    plain = completion(url, prompt="We the People", max_tokens=4, temperature=0, logprobs=1).json()["choices"][0]
    assert len(plain["logprobs"]["tokens"]) >= 1 and plain["logprobs"]["text_offset"][0] == 0


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"prompt": "x", "echo": True, "logprobs": 1, "stream": True}, "without stream"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens 0 generates nothing"),
        ({"prompt": [1, 2, 99999], "max_tokens": 1}, "token ids must be 0 to"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ],
)
def test_scoring_requests_it_cannot_answer_get_a_400_that_says_why(served, body, said):
    url, _ = served
    refused = completion(url, **body)
    assert refused.status_code == 400 and said in refused.json()["error"]["message"]


@pytest.mark.slow
def test_the_harness_scores_the_served_model_over_http_as_tinylm_eval_does_in_process(
    served, module_workspace, tmp_path, monkeypatch
):
    url, run_id = served
    config = EvalConfig(benchmarks=[str(CMMLU)], limit=8, batch_size=1)
    checkpoint = newest_local_checkpoint(run_checkpoints(module_workspace, run_id))
    exported = export_hf(checkpoint, tmp_path / "hf", module_workspace)
    in_process = {row["task"]: row for row in run_benchmarks(exported, config, "cpu")}

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    tasks = local_tasks(CMMLU)
    over_http = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={
            "base_url": url,
            "model": "tinylm",
            "tokenizer_backend": "huggingface",
            "tokenizer": str(exported),
            "max_length": CONTEXT - 1,  # room for the one token the harness has generated with each score
            "num_concurrent": 1,
            "max_retries": 1,
        },
        tasks=[task_config(task, config) for task in tasks],
        limit=config.limit,
        task_manager=TaskManager(include_defaults=False),
    )
    for task in tasks:
        scores = over_http["results"][task.harness_name]
        print(f"{task.name}: acc {scores['acc,none']} over HTTP, {in_process[task.name]['acc']} in process")
        assert scores["acc,none"] == pytest.approx(in_process[task.name]["acc"]), task.name
        assert scores["acc_norm,none"] == pytest.approx(in_process[task.name]["acc_norm"]), task.name
        assert over_http["n-samples"][task.harness_name]["effective"] == in_process[task.name]["items"] == 8
