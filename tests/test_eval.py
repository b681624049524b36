"""`tinylm eval`: perplexity checked against a plain loop over the model, local benchmarks through lm-evaluation-harness
checked against the model's own choice scores, and both recorded in MLflow and Prefect."""

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np
import opencc
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from tinylm.config import EvalConfig, ExtractConfig
from tinylm.corpus.readers import read_documents
from tinylm.evaluation.benchmarks import task_config
from tinylm.evaluation.evaluate import evaluate_model
from tinylm.evaluation.perplexity import perplexity
from tinylm.evaluation.subjects import subject_name
from tinylm.flows.evaluate import eval_flow
from tinylm.inference.generate import load_model
from tinylm.stats import Stats
from tinylm.storage.benchmark_files import LocalTask, local_tasks, task_rows
from tinylm.storage.documents import corpus_parts
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.shard_files import ShardsManifest
from tinylm.tokens.tokenizer_files import EOS
from tinylm.training.trainer import train_model

from .helpers import kill_when, tiny_train_config

CMMLU = Path(__file__).parent / "data" / "cmmlu"
CEVAL = Path(__file__).parent / "data" / "ceval"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(prefect_api, shards_dir, module_workspace) -> str:
    return train_model(shards_dir, module_workspace, tiny_train_config(max_shards=2, sample_tokens=0))["run_id"]


@pytest.fixture(scope="module")
def loaded(trained, module_workspace):
    return load_model(trained, module_workspace)


def test_every_token_after_the_first_is_scored_once_with_the_models_own_loss(loaded, constitution, tmp_path):
    text = tmp_path / "held-out.txt"
    paragraphs = [line for line in constitution.read_text(encoding="utf-8").splitlines() if line.strip()][:12]
    text.write_text("\n\n".join(paragraphs), encoding="utf-8")
    # Windows of 16 tokens in batches of 3: full batches, a short last batch and a shorter tail window.
    scores = perplexity(loaded, text, EvalConfig(seq_len=16, batch_size=3), CPU)

    documents = [document["text"] for document in read_documents(text, ExtractConfig(), Stats())]
    eos = loaded.tokenizer.token_to_id(EOS)
    stream = [
        token
        for document in documents
        for token in [eos, *loaded.tokenizer.encode(document, add_special_tokens=False).ids]
    ]
    expected_nll = 0.0
    with torch.no_grad():
        for start in range(0, len(stream) - 1, 16):
            window = torch.tensor(stream[start : start + 17])[None]
            expected_nll += float(
                F.cross_entropy(loaded.model(window[:, :-1]).logits[0], window[0, 1:], reduction="sum")
            )
    (group,) = set(scores) - {"all"}
    assert group == "held-out/zh"
    assert scores[group]["tokens"] == len(stream) - 1
    assert scores[group]["bytes"] == sum(len(document.encode("utf-8")) for document in documents), (
        "bytes per token are exact"
    )
    assert scores[group]["loss"] == pytest.approx(expected_nll / (len(stream) - 1), rel=1e-5)
    assert scores[group]["bits_per_byte"] == pytest.approx(expected_nll / np.log(2) / scores[group]["bytes"], rel=1e-5)
    assert scores["all"] == scores[group] | {"simplified_documents": 0}


def test_traditional_text_is_simplified_before_scoring_as_the_corpus_stage_does(loaded, constitution, tmp_path):
    paragraphs = [line for line in constitution.read_text(encoding="utf-8").splitlines() if len(line) > 40][:12]
    traditional = tmp_path / "traditional.txt"
    traditional.write_text("\n\n".join(opencc.OpenCC("s2t").convert(line) for line in paragraphs), encoding="utf-8")
    simplified = perplexity(loaded, traditional, EvalConfig(), CPU)["all"]
    as_written = perplexity(loaded, traditional, EvalConfig(simplify=False), CPU)["all"]
    assert (simplified["simplified_documents"], as_written["simplified_documents"]) == (len(paragraphs), 0)
    assert simplified["bits_per_byte"] < as_written["bits_per_byte"], "the model learned simplified text"


def test_a_corpus_is_scored_per_source_and_language_within_the_budget(loaded, small_corpus):
    scores = perplexity(loaded, small_corpus, EvalConfig(max_tokens=3000, batch_size=16), CPU)
    rows = pq.read_table(corpus_parts(small_corpus), columns=["source", "lang"]).to_pylist()
    assert set(scores) - {"all"} == {f"{row['source']}/{row['lang']}" for row in rows}
    assert all(0 < score["tokens"] <= 3000 for score in scores.values() if score is not scores["all"])
    assert scores["all"]["tokens"] == sum(score["tokens"] for group, score in scores.items() if group != "all")


def test_shards_are_scored_on_their_validation_split_and_only_with_their_tokenizer(loaded, shards_dir, tmp_path):
    validation_tokens = sum(shard.tokens for shard in read_manifest(shards_dir, ShardsManifest).validation.shards)
    scores = perplexity(loaded, shards_dir, EvalConfig(max_tokens=10**9), CPU)
    assert scores["validation"]["tokens"] == validation_tokens - 1

    foreign = shutil.copytree(shards_dir, tmp_path / "foreign")
    manifest = json.loads((foreign / "manifest.json").read_text())
    (foreign / "manifest.json").write_text(json.dumps(manifest | {"tokenizer_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="tokenized with another tokenizer"):
        perplexity(loaded, foreign, EvalConfig(), CPU)
    with pytest.raises(ValueError, match=f"{tmp_path} is neither a finished corpus nor a shard directory"):
        perplexity(loaded, tmp_path, EvalConfig(), CPU)


def test_flat_jsonl_benchmarks_are_read_and_their_bad_rows_named(tmp_path):
    """A folder of `<subject>.jsonl` files (C-Eval's and CMMLU's own layouts: tests/test_benchmark_files.py)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    items = [
        {"question": "1+1=", "A": "1", "B": "2", "C": "3", "answer": "B"},
        {"question": "2+2=", "A": "4", "B": "5", "C": "6", "answer": "a"},
    ]
    (flat / "arithmetic.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    (task,) = local_tasks(flat)
    assert (task.layout, task.fewshot, task.choices, task_config(task, EvalConfig())["doc_to_choice"]) == (
        "flat",
        None,
        ("A", "B", "C"),
        ["A", "B", "C"],
    )

    (flat / "arithmetic.jsonl").write_text(json.dumps(items[0] | {"answer": "E"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"arithmetic.jsonl: row 1, column answer: answer 'E' is not one of A, B, C"):
        local_tasks(flat)
    (flat / "arithmetic.jsonl").write_text(json.dumps({"prompt": "1+1="}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"arithmetic.jsonl: no column question or answer or A, B; expected"):
        local_tasks(flat)


def choice_accuracy(loaded, task: LocalTask, limit: int, system: str | None = None) -> float:
    """The share of items whose answer letter the model scores highest after the harness's C-Eval/CMMLU prompt,
    computed the way the harness builds its requests (context with trailing whitespace moved to the continuation,
    then " X"; the last max_seq_len + 1 tokens), on tinylm's model. With a system prompt, the prompt is asked inside
    ChatML (tinylm's chat template) as the harness's apply_chat_template asks it: system turn, user turn, and the
    assistant's turn opened, the letter alone its reply."""
    where = "中国关于" if task.layout == "ceval" else "关于"
    description = f"以下是{where}{subject_name(task)}的单项选择题，请直接给出正确答案的选项。\n\n"
    window = loaded.model.config.max_seq_len + 1
    right = 0
    for row in task_rows(task, task.scored)[:limit]:
        question = f"{row['question']}\nA. {row['A']}\nB. {row['B']}\nC. {row['C']}\nD. {row['D']}\n答案："
        context, delimiter = description + question, " "
        if system is not None:
            turns = [("system", f"{system}\n\n{description}"), ("user", question)]
            context = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)
            context, delimiter = context + "<|im_start|>assistant\n", ""
        stripped = context.rstrip()
        context_ids = loaded.tokenizer.encode(stripped, add_special_tokens=False).ids
        scores = []
        for letter in "ABCD":
            whole = loaded.tokenizer.encode(f"{context}{delimiter}{letter}", add_special_tokens=False).ids
            continuation = whole[len(context_ids) :]
            tokens = torch.tensor(whole[-window:])
            with torch.no_grad():
                logprobs = F.log_softmax(loaded.model(tokens[None, :-1]).logits[0], dim=-1)
            targets = tokens[-len(continuation) :]
            scores.append(float(logprobs[-len(continuation) :].gather(1, targets[:, None]).sum()))
        right += "ABCD"[int(np.argmax(scores))] == row["answer"]
    return right / min(limit, len(task_rows(task, task.scored)))


async def _artifact_keys(flow_run_id: str) -> dict[str, object]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


@pytest.mark.slow
def test_eval_flow_records_perplexity_and_harness_benchmarks_beside_the_training_run(
    trained, loaded, shards_dir, module_workspace
):
    config = EvalConfig(perplexity_data=[str(shards_dir)], benchmarks=[str(CMMLU)], limit=8)
    result = eval_flow(trained, config, str(module_workspace))

    rows = {row["task"]: row for row in result["benchmarks"]}
    tasks = {task.subject: task for task in local_tasks(CMMLU)}
    assert {name: row["level"] for name, row in rows.items()} == {
        "cmmlu/chinese_history": "subject",
        "cmmlu/elementary_commonsense": "subject",
        "cmmlu/Humanities": "category",
        "cmmlu/Other": "category",
        "cmmlu/China specific": "category",
        "cmmlu": "benchmark",
    }
    assert rows["cmmlu/Humanities"]["acc"] == rows["cmmlu/chinese_history"]["acc"]
    for subject in ("chinese_history", "elementary_commonsense"):
        assert rows[f"cmmlu/{subject}"]["items"] == 8
        assert rows[f"cmmlu/{subject}"]["acc"] == pytest.approx(choice_accuracy(loaded, tasks[subject], 8))
    assert rows["cmmlu"]["items"] == 16
    assert rows["cmmlu"]["acc"] == pytest.approx(
        (rows["cmmlu/chinese_history"]["acc"] + rows["cmmlu/elementary_commonsense"]["acc"]) / 2
    )
    (shards,) = [row for row in result["perplexity"] if row["group"] == "validation"]
    assert shards["perplexity"] == pytest.approx(
        perplexity(loaded, shards_dir, config, CPU)["validation"]["perplexity"]
    )

    client = MlflowClient()
    eval_run = client.get_run(result["run_id"])
    assert eval_run.info.status == "FINISHED" and eval_run.data.tags["mlflow.parentRunId"] == trained
    assert eval_run.data.tags[f"tinylm.data.shards/{shards_dir.name}"] == shards["fingerprint"]
    name = f"eval/shards/{shards_dir.name}/validation/perplexity"
    for run_id in (result["run_id"], trained):
        metrics = client.get_run(run_id).data.metrics
        assert metrics["eval/cmmlu/acc"] == pytest.approx(rows["cmmlu"]["acc"]) and metrics[name] == pytest.approx(
            shards["perplexity"]
        )
    assert {item.path for item in client.list_artifacts(result["run_id"], "eval")} >= {
        "eval/benchmarks.json",
        "eval/perplexity.json",
    }

    artifacts = asyncio.run(_artifact_keys(eval_run.data.tags["prefect.flow_run_id"]))
    assert artifacts["eval-benchmarks"].type == "table" and "cmmlu/chinese_history" in artifacts["eval-benchmarks"].data
    assert result["run_id"] in artifacts["eval-summary"].data

    again = eval_flow(trained, config, str(module_workspace))
    assert again["reused"] and again["run_id"] == result["run_id"] and again["benchmarks"] == result["benchmarks"]


@pytest.mark.slow
def test_real_c_eval_subjects_score_per_subject_and_category_plain_in_chat_and_with_chain_of_thought(
    trained, loaded, module_workspace
):
    """The real C-Eval folder (one subject per category, multi-line fields, dev with explanations, val without):
    the answer-only scores equal the model's own choice scores, plain and inside its chat template; C-Eval's
    chain of thought generates and is scored; each run records how it asked."""
    tasks = {task.subject: task for task in local_tasks(CEVAL)}
    client = MlflowClient()
    plain = evaluate_model(trained, EvalConfig(benchmarks=[str(CEVAL)], limit=4), str(module_workspace))
    rows = {row["task"]: row for row in plain["benchmarks"]}
    for subject, task in tasks.items():
        assert rows[f"ceval/{subject}"]["items"] == 4
        assert rows[f"ceval/{subject}"]["acc"] == pytest.approx(choice_accuracy(loaded, task, 4)), subject
    categories = {"STEM": "college_programming", "Social Science": "high_school_politics"}
    categories |= {"Humanities": "high_school_chinese", "Other": "basic_medicine"}
    for category, subject in categories.items():
        assert rows[f"ceval/{category}"]["level"] == "category"
        assert rows[f"ceval/{category}"]["acc"] == rows[f"ceval/{subject}"]["acc"]
    assert rows["ceval"]["acc"] == pytest.approx(sum(rows[f"ceval/{s}"]["acc"] for s in tasks) / 4)
    run = client.get_run(plain["run_id"])
    assert run.data.metrics["eval/ceval/Social Science/acc"] == rows["ceval/Social Science"]["acc"]
    assert (run.data.tags["tinylm.eval.prompt"], run.data.tags["tinylm.eval.chat_template"]) == ("answer_only", "false")

    system = "你是一个有用的助手。"
    chat = EvalConfig(benchmarks=[str(CEVAL)], limit=4, apply_chat_template=True, system_prompt=system)
    asked_in_chat = evaluate_model(trained, chat, str(module_workspace))
    rows = {row["task"]: row for row in asked_in_chat["benchmarks"]}
    for subject, task in tasks.items():
        assert rows[f"ceval/{subject}"]["acc"] == pytest.approx(choice_accuracy(loaded, task, 4, system)), subject
    assert client.get_run(asked_in_chat["run_id"]).data.tags["tinylm.eval.chat_template"] == "true"

    thought = EvalConfig(benchmarks=[str(CEVAL)], limit=2, prompt="chain_of_thought", num_fewshot=1, max_new_tokens=8)
    reasoned = evaluate_model(trained, thought, str(module_workspace))
    rows = {row["task"]: row for row in reasoned["benchmarks"]}
    assert all(rows[f"ceval/{subject}"]["items"] == 2 for subject in tasks)
    assert all(0 <= row["acc"] <= 1 for row in rows.values()) and rows["ceval"]["level"] == "benchmark"
    assert client.get_run(reasoned["run_id"]).data.tags["tinylm.eval.prompt"] == "chain_of_thought"
    assert len({plain["run_id"], asked_in_chat["run_id"], reasoned["run_id"]}) == 3, "each way of asking is its own run"


@pytest.mark.slow
def test_an_eval_killed_midway_is_taken_up_again_by_the_same_command(trained, bilingual_corpus, module_workspace):
    config = EvalConfig(perplexity_data=[str(bilingual_corpus)], max_tokens=400_000, batch_size=64)
    client = MlflowClient()
    experiments = [client.get_run(trained).info.experiment_id]

    def started() -> bool:
        time.sleep(0.2)
        return bool(client.search_runs(experiments, "tags.`tinylm.stage` = 'eval' and attributes.status = 'RUNNING'"))

    code = (
        "from tinylm.config import EvalConfig; from tinylm.evaluation.evaluate import evaluate_model; "
        f"evaluate_model({trained!r}, EvalConfig.model_validate({config.model_dump(mode='json')!r}), "
        f"{str(module_workspace)!r})"
    )
    kill_when(code, started)
    (killed,) = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    result = evaluate_model(trained, config, str(module_workspace))
    assert result["run_id"] == killed.info.run_id and not result["reused"]
    finished = client.get_run(result["run_id"])
    assert finished.info.status == "FINISHED" and finished.data.tags["mlflow.parentRunId"] == trained
    assert {row["group"] for row in result["perplexity"]} == {"zuozhuan/zh", "enwiki/en", "all"}
    overall = result["perplexity"][-1]["perplexity"]
    assert finished.data.metrics[f"eval/corpus/{bilingual_corpus.name}/all/perplexity"] == pytest.approx(overall)
