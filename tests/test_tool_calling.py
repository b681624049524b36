"""Tool calling end to end: chat data with tools, SFT, and `tinylm serve` answering the `openai` client with
`tool_calls`, on a tiny model trained on CPU to make one call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.helpers import CHROMIUM, free_port, make_chat_data, tiny_train_config, wait_for_http
from tinylm.config import ChatDataConfig
from tinylm.model.config import ModelConfig
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.training.trainer import train_model

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "今天的天气",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION = {"role": "user", "content": "北京天气怎么样？"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "北京"}'}}
ANSWER = "北京今天晴。"
SUM = {"role": "user", "content": "1+1=?"}


@pytest.fixture(scope="module")
def served(prefect_api, shards_dir, module_workspace, tmp_path_factory):
    """A tiny model fine-tuned on one tool-calling exchange, behind `tinylm serve`."""
    data = tmp_path_factory.mktemp("tool-data")
    calling = {"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}], "tools": [WEATHER]}
    answering = {
        "messages": [*calling["messages"], {"role": "tool", "content": "晴"}, {"role": "assistant", "content": ANSWER}],
        "tools": [WEATHER],
    }
    thinking = {"messages": [SUM, {"role": "assistant", "content": "2", "reasoning_content": "一加一得二"}]}
    source = data / "tools.jsonl"
    records = [calling, answering, thinking] * 32
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    tokenizer = read_manifest(shards_dir, ShardsManifest).tokenizer_dir
    chat = ChatDataConfig(max_seq_len=512, validation_fraction=0)
    manifest = make_chat_data([str(source)], tokenizer, data / "sft", chat)
    assert manifest["stats"]["with_tools"] == 64 and not manifest["stats"]["truncated"]
    model = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=512)
    config = tiny_train_config(
        model=model, seq_len=511, epochs=12, max_shards=None, max_steps_per_shard=None, eval_batches=0, sample_tokens=0
    )
    run_id = train_model(data / "sft", module_workspace, config)["run_id"]
    port = free_port()
    command = [str(Path(sys.executable).parent / "tinylm"), "serve", "--model", run_id]
    command += ["--workspace", str(module_workspace), "--port", str(port)]
    server = subprocess.Popen(command, env=os.environ, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server)
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_reply_that_calls_a_tool_comes_back_as_tool_calls(served):
    reply = served.chat.completions.create(model="tinylm", messages=[QUESTION], tools=[WEATHER], temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("weather", {"city": "北京"})


def test_a_streamed_reply_carries_the_call_in_its_deltas(served):
    stream = served.chat.completions.create(
        model="tinylm", messages=[QUESTION], tools=[WEATHER], temperature=0, stream=True
    )
    chunks = list(stream)
    calls = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert [(call.index, call.function.name) for call in calls] == [(0, "weather")]
    assert json.loads(calls[0].function.arguments) == {"city": "北京"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_tools_result_is_answered_in_words(served):
    messages = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [CALL]}]
    messages.append({"role": "tool", "tool_call_id": "call_1", "content": "晴"})
    reply = served.chat.completions.create(model="tinylm", messages=messages, tools=[WEATHER], temperature=0)
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content == ANSWER


def test_thinking_comes_back_as_reasoning_content_not_in_the_content(served):
    message = served.chat.completions.create(model="tinylm", messages=[SUM], temperature=0).choices[0].message
    assert (message.content, message.model_extra["reasoning_content"]) == ("2", "一加一得二")
    stream = served.chat.completions.create(model="tinylm", messages=[SUM], temperature=0, stream=True)
    deltas = [chunk.choices[0].delta for chunk in stream]
    assert "".join(delta.model_extra.get("reasoning_content") or "" for delta in deltas) == "一加一得二"
    assert "".join(delta.content or "" for delta in deltas) == "2"


def test_the_chat_page_shows_the_thinking_collapsed_above_the_answer(served):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(str(served.base_url).removesuffix("v1/"))
        page.wait_for_function("document.getElementById('model').textContent === 'tinylm'")
        page.fill("#temperature", "0")
        page.fill("#input", SUM["content"])
        page.press("#input", "Enter")
        page.wait_for_selector(".assistant[data-state=done]", timeout=60_000)
        assert page.text_content(".assistant details.reasoning > div") == "一加一得二"
        assert not page.eval_on_selector(".assistant details.reasoning", "element => element.open"), "collapsed"
        assert page.text_content(".assistant > span") == "2"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chat-page-reasoning.png"))
        browser.close()


def test_forcing_a_call_is_refused_not_ignored(served):
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        served.chat.completions.create(model="tinylm", messages=[QUESTION], tools=[WEATHER], tool_choice="required")
