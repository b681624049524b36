"""`tinylm serve` as the ecosystem meets it: a real server process, the official `openai` client, many at once."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest
import torch

from tests.helpers import CHROMIUM, free_port, tiny_train_config, wait_for_http
from tinylm.inference.generate import chat_reply, generate_text, load_model
from tinylm.model.generation import Sampling
from tinylm.training.trainer import train_model

KEY = "test-key"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
GREEDY = Sampling(temperature=0, top_k=0, top_p=1.0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def served(prefect_api, shards_dir, module_workspace):
    """A trained tiny model behind `tinylm serve` with an API key; yields (client, base URL, run id)."""
    run_id = train_model(shards_dir, module_workspace, tiny_train_config(max_shards=2, sample_tokens=0))["run_id"]
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "tinylm"),
        "serve",
        "--model",
        run_id,
        "--workspace",
        str(module_workspace),
    ]
    command += ["--port", str(port), "--max-tokens", "24", "--max-body-bytes", "20000"]
    server = subprocess.Popen(command, env=os.environ | {"TINYLM_API_KEY": KEY}, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server)
        yield openai.OpenAI(base_url=base, api_key=KEY), base, run_id, module_workspace
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_models_and_chat_answer_as_the_model_does_in_process(served):
    client, _, run_id, workspace = served
    assert [model.id for model in client.models.list()] == ["tinylm"]
    messages = [{"role": "user", "content": "合众国宪法"}]
    reply = client.chat.completions.create(model="tinylm", messages=messages, temperature=0, max_tokens=12)
    loaded = load_model(run_id, workspace)
    expected = "".join(chat_reply(loaded, messages, 12, GREEDY, torch.Generator()))
    assert reply.choices[0].message.content == expected and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    stream = client.chat.completions.create(
        model="tinylm", messages=messages, temperature=0, max_tokens=12, stream=True
    )
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == expected and len(chunks) >= 3
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_completions_stop_strings_and_seeds(served):
    client, _, run_id, workspace = served
    text = (
        client.completions.create(model="tinylm", prompt="The Congress", temperature=0, max_tokens=20).choices[0].text
    )
    assert "The Congress" + text == generate_text(load_model(run_id), "The Congress", 20, GREEDY)
    streamed = client.completions.create(
        model="tinylm", prompt="The Congress", temperature=0, max_tokens=20, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == text
    stop = text.strip()[3:6]
    cut = client.completions.create(
        model="tinylm", prompt="The Congress", temperature=0, max_tokens=20, stop=[stop]
    ).choices[0]
    assert cut.text == text[: text.index(stop)] and cut.finish_reason == "stop"
    sampled = [
        client.completions.create(model="tinylm", prompt="The", temperature=1.0, top_p=0.9, max_tokens=20, seed=seed)
        .choices[0]
        .text
        for seed in (7, 7, 8)
    ]
    assert sampled[0] == sampled[1] != sampled[2], "a seed fixes a sampled answer"


def test_requests_outside_the_bounds_get_a_4xx_that_says_why(served):
    client, base, _, _ = served
    with pytest.raises(openai.BadRequestError, match="exceeds this server's limit of 24"):
        client.completions.create(model="tinylm", prompt="The", max_tokens=1000)
    with pytest.raises(openai.BadRequestError, match="this model's context is 32"):
        client.chat.completions.create(model="tinylm", messages=[{"role": "user", "content": "合众国宪法" * 40}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model="tinylm", prompt="The", temperature=5)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="wrong").models.list()
    assert httpx.get(f"{base}/models").status_code == 401, "no key, no answer"
    huge = httpx.post(f"{base}/completions", headers={"Authorization": f"Bearer {KEY}"}, json={"prompt": "x" * 30_000})
    assert huge.status_code == 413 and "20000 bytes" in huge.json()["error"]["message"]


def test_concurrent_clients_each_get_their_own_answer(served):
    client, _, _, _ = served
    prompts = ["The", "Congress", "合众国", "宪法", "President", "States", "我们", "law"]
    alone = [
        client.completions.create(model="tinylm", prompt=p, temperature=0, max_tokens=16).choices[0].text
        for p in prompts
    ]
    together: dict[int, str] = {}

    def ask(index: int) -> None:
        stream = client.completions.create(
            model="tinylm", prompt=prompts[index], temperature=0, max_tokens=16, stream=True
        )
        together[index] = "".join(chunk.choices[0].text for chunk in stream)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [together[index] for index in range(len(prompts))] == alone


def test_the_chat_page_streams_an_answer_in_a_browser(served):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine")
    client, base, _, _ = served
    messages = [{"role": "user", "content": "The Congress"}]
    expected = (
        client.chat.completions.create(model="tinylm", messages=messages, temperature=0, max_tokens=12)
        .choices[0]
        .message.content
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base.removesuffix("v1"))
        page.wait_for_function("document.getElementById('model').textContent !== '…'")
        assert page.text_content("#model") == "enter the API key", "the page asks for the key the API requires"
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.wait_for_function("document.getElementById('model').textContent === 'tinylm'")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "12")
        page.evaluate(
            "window.states = []; new MutationObserver((records) => records.forEach((r) => "
            "window.states.push(r.target.dataset.state)))"
            ".observe(document.getElementById('messages'), {subtree: true, attributeFilter: ['data-state']})"
        )
        page.fill("#input", "The Congress")
        page.press("#input", "Enter")
        page.wait_for_selector(".assistant[data-state=done]", timeout=60_000)
        assert page.text_content(".user") == "The Congress"
        assert page.text_content(".assistant") == expected
        assert page.evaluate("window.states") == ["streaming", "done"], (
            "the reply was read from the event stream as it came"
        )

        # More turns at the page's own defaults (max tokens 128, over this server's 24 and the model's context of 32):
        # the oldest turns are left out, and the page says so.
        page.fill("#temperature", "0.8")
        page.fill("#max-tokens", "128")
        for turn, text in enumerate(["What does it do", "And the Senate", "Who elects them"], start=2):
            page.fill("#input", text)
            page.press("#input", "Enter")
            page.wait_for_function(
                f"document.querySelectorAll('.assistant[data-state=done]').length === {turn}", timeout=60_000
            )
        assert page.query_selector_all(".error") == []
        notes = [note.text_content() for note in page.query_selector_all(".note")]
        assert notes and all("no longer fit the model's context of 32 tokens" in note for note in notes)

        # Send is locked while a reply streams, and Stop ends it: clicked before the first token arrives.
        page.fill("#system", "Be brief.")
        page.fill("#top-p", "0.5")
        locked = page.evaluate(
            "() => { $('input').value = 'Stop me'; $('composer').requestSubmit();"
            " const locked = $('send').disabled && !$('stop').disabled; $('stop').click(); return locked; }"
        )
        assert locked, "Send is disabled and Stop enabled while a reply streams"
        page.wait_for_selector(".assistant[data-state=stopped]", timeout=60_000)
        assert page.is_enabled("#send") and page.is_disabled("#stop")
        page.fill("#input", "Hi")
        page.press("#input", "Enter")
        page.wait_for_function("document.querySelectorAll('.assistant[data-state=done]').length === 5", timeout=60_000)
        assert page.query_selector_all(".error") == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chat-page.png"))
        browser.close()


def test_the_key_guards_every_route_but_the_page_and_an_unknown_model_is_openais_404(served):
    client, base, _, _ = served
    root = base.removesuffix("/v1")
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert httpx.get(f"{base}/models", headers={"Authorization": f"{scheme} {KEY}"}).status_code == 200, scheme
    for wrong in ("Bearer wrong-key", f"Basic {KEY}", KEY, f"Bearer {KEY}x", ""):
        assert httpx.get(f"{base}/models", headers={"Authorization": wrong}).status_code == 401, wrong
    for described in ("docs", "redoc", "openapi.json"):
        assert httpx.get(f"{root}/{described}").status_code == 401, described
        with_key = httpx.get(f"{root}/{described}", headers={"Authorization": f"Bearer {KEY}"})
        assert with_key.status_code == 404, "the API's description is not served when a key is set"
    assert httpx.get(f"{root}/").status_code == 200, "the chat page stays public"
    assert httpx.get(f"{root}/health").json()["status"] == "ok", "and so does the health check"
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "model_not_found" and "tinylm" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt="The")


def test_tokenize_counts_a_conversation_as_the_model_sees_it(served):
    client, base, run_id, workspace = served
    root = base.removesuffix("/v1")
    auth = {"Authorization": f"Bearer {KEY}"}
    card = httpx.get(f"{base}/models", headers=auth).json()["data"][0]
    assert (card["max_model_len"], card["max_tokens"]) == (32, 24)
    messages = [{"role": "user", "content": "The Congress"}]
    counted = httpx.post(f"{root}/tokenize", json={"messages": messages}, headers=auth).json()
    reply = client.chat.completions.create(model="tinylm", messages=messages, max_tokens=1)
    assert counted["count"] == reply.usage.prompt_tokens == len(counted["tokens"]) and counted["max_model_len"] == 32
    assert (
        httpx.post(f"{root}/tokenize", json={"prompt": "The Congress"}, headers=auth).json()["count"] < counted["count"]
    )
    assert httpx.post(f"{root}/tokenize", json={}, headers=auth).status_code == 400
    assert httpx.post(f"{root}/tokenize", json={"prompt": "x"}).status_code == 401
