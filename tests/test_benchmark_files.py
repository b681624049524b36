"""Benchmark folders as C-Eval and CMMLU ship them (real subjects in tests/data), the prompts the harness builds
from them, and the one-line errors a damaged file gets."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lm_eval.tasks import TaskManager, get_task_dict

from tinylm.config import EvalConfig
from tinylm.evaluation.benchmarks import check_settings, task_config
from tinylm.evaluation.leaderboard import leaderboard
from tinylm.evaluation.subjects import categories
from tinylm.storage.benchmark_files import local_tasks, task_rows

DATA = Path(__file__).parent / "data"
CEVAL = DATA / "ceval"
CMMLU_FOLDERS = (DATA / "cmmlu", DATA / "cmmlu-categories")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def cmmlu(tmp_path: Path) -> Path:
    """The five real CMMLU subjects in one folder, as a user's unpacked CMMLU holds them."""
    folder = tmp_path / "cmmlu"
    for source in CMMLU_FOLDERS:
        shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    return folder


def test_c_eval_is_read_as_it_ships_dev_with_explanations_val_without_and_test_ignored():
    tasks = {task.subject: task for task in local_tasks(CEVAL)}
    assert sorted(tasks) == ["basic_medicine", "college_programming", "high_school_chinese", "high_school_politics"]
    programming = tasks["college_programming"]
    assert (programming.layout, programming.scored.parent.name, programming.fewshot.name) == (
        "ceval",
        "val",
        "college_programming_dev.csv",
    )
    scored = task_rows(programming, programming.scored)
    assert len(scored) == len(read_csv(programming.scored)) == 37
    assert {row["explanation"] for row in scored} == {""}, "val ships without explanations"
    # Quoted fields that span lines (pseudo-code) come through whole, not as broken rows.
    multi_line = [row for row in scored if "\n" in row["question"]]
    assert len(multi_line) == 6 and all(row["answer"] in "ABCD" for row in scored)
    shots = task_rows(programming, programming.fewshot)
    assert len(shots) == 5 and all(row["explanation"].startswith("1.") for row in shots)
    assert {subject: categories(task) for subject, task in tasks.items()} == {
        "basic_medicine": ["Other"],
        "college_programming": ["STEM"],
        "high_school_chinese": ["Humanities"],
        "high_school_politics": ["Social Science"],
    }


def test_cmmlu_is_read_with_its_index_column_and_capitalised_answer_and_its_categories(cmmlu):
    tasks = {task.subject: task for task in local_tasks(cmmlu)}
    assert {task.layout for task in tasks.values()} == {"cmmlu"}
    history = tasks["chinese_history"]
    assert (history.question, history.answer, history.scored.parent.name) == ("Question", "Answer", "test")
    first = task_rows(history, history.scored)[0]
    original = read_csv(history.scored)[0]
    assert set(first) == {"question", "A", "B", "C", "D", "answer", "explanation"}
    assert (first["question"], first["answer"]) == (original["Question"], original["Answer"])
    assert categories(tasks["ancient_chinese"]) == ["Social Science", "China specific"]
    assert categories(tasks["world_religions"]) == ["Humanities"]
    assert categories(tasks["computer_science"]) == ["STEM"]


def rendered(task, config: EvalConfig) -> tuple[str, str]:
    """The prompt and target lm-evaluation-harness builds for the subject's first scored item."""
    harness_task = get_task_dict([task_config(task, config)], TaskManager(include_defaults=False))[task.harness_name]
    doc = next(iter(harness_task.test_docs()))
    return harness_task.fewshot_context(doc, config.num_fewshot), harness_task.doc_to_target(doc)


def options(row: dict[str, str]) -> str:
    return "".join(f"\n{letter}. {row[letter]}" for letter in "ABCD")


def test_chain_of_thought_is_c_evals_own_prompt_with_its_worked_explanations():
    """C-Eval's evaluators: the subject's header, each dev example with 让我们一步一步思考, its explanation and
    所以答案是X。, then the question opened for reasoning at 1. (hkust-nlp/ceval, evaluators/llama.py)."""
    task = next(task for task in local_tasks(CEVAL) if task.subject == "college_programming")
    shots, scored = read_csv(task.fewshot), read_csv(task.scored)
    expected = "以下是中国关于大学编程考试的单项选择题，请选出其中的正确答案。\n\n"
    for shot in shots[:2]:
        expected += f"{shot['question']}{options(shot)}\n答案：让我们一步一步思考，\n"
        expected += f"{shot['explanation'].strip()}\n所以答案是{shot['answer']}。\n\n"
    expected += f"{scored[0]['question']}{options(scored[0])}\n答案：让我们一步一步思考，\n1."
    assert rendered(task, EvalConfig(prompt="chain_of_thought", num_fewshot=2)) == (expected, scored[0]["answer"])

    answer_only = "以下是中国关于大学编程的单项选择题，请直接给出正确答案的选项。\n\n"
    answer_only += f"{shots[0]['question']}{options(shots[0])}\n答案： {shots[0]['answer']}\n\n"
    answer_only += f"{scored[0]['question']}{options(scored[0])}\n答案："
    assert rendered(task, EvalConfig(num_fewshot=1))[0] == answer_only


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("循环体执行n/3次。\n所以答案是B。", "B"),
        ("2. 排除A和B。\n答案应该是 C", "C"),
        ("综上，选择D。", "D"),
        ("A是正确的", "A"),
        ("我不知道", "[invalid]"),
    ],
)
def test_the_letter_a_reasoning_concludes_with_is_found_as_c_evals_evaluators_find_it(reply, letter):
    task = next(task for task in local_tasks(CEVAL) if task.subject == "college_programming")
    config = EvalConfig(prompt="chain_of_thought")
    harness_task = get_task_dict([task_config(task, config)], TaskManager(include_defaults=False))[task.harness_name]
    (concluded,) = harness_task._filters
    responses = [[reply]]
    for step in concluded.filters:
        responses = list(step().apply(responses, [{}]))
    assert concluded.name == "concluded" and responses == [letter]


def test_chain_of_thought_without_worked_examples_or_on_harness_tasks_is_refused_in_one_line(cmmlu):
    with pytest.raises(ValueError, match=r"dev/ancient_chinese\.csv: prompt chain_of_thought shows worked examples"):
        check_settings(EvalConfig(benchmarks=[str(cmmlu)], prompt="chain_of_thought", num_fewshot=1))
    with pytest.raises(ValueError, match=r"hellaswag are harness tasks with their own prompts"):
        check_settings(EvalConfig(benchmarks=[str(CEVAL), "hellaswag"], prompt="chain_of_thought"))
    tasks, named = check_settings(EvalConfig(benchmarks=[str(cmmlu)], prompt="chain_of_thought"))
    assert len(tasks) == 5 and named == [], "zero-shot chain of thought needs no explanations"


def damaged_copy(tmp_path: Path, row: int, column: str, value: str) -> Path:
    """The real C-Eval folder with one cell of college_programming's val file changed."""
    folder = tmp_path / "ceval"
    shutil.copytree(CEVAL, folder)
    path = folder / "val" / "college_programming_val.csv"
    rows = read_csv(path)
    rows[row - 1][column] = value
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_damaged_item_is_named_by_file_row_and_column(tmp_path):
    # Row 5 comes after multi-line records: it is counted in items, not in lines.
    folder = damaged_copy(tmp_path / "answer", 5, "answer", "E")
    with pytest.raises(ValueError, match=r"college_programming_val\.csv: row 5, column answer: answer 'E' is not one"):
        local_tasks(folder)
    folder = damaged_copy(tmp_path / "question", 2, "question", " ")
    with pytest.raises(ValueError, match=r"_val\.csv: row 2, column question: the question is empty"):
        local_tasks(folder)
    unlabelled = tmp_path / "test-only"
    shutil.copytree(CEVAL / "test", unlabelled / "test")
    with pytest.raises(ValueError, match=r"no column answer; .*found id, question, A, B, C, D .*score its val/ split"):
        local_tasks(unlabelled)


def test_the_eval_command_fails_on_a_damaged_file_in_one_line_before_loading_a_model(prefect_api, tmp_path):
    folder = damaged_copy(tmp_path, 3, "answer", "Z")
    command = [sys.executable, "-m", "tinylm.cli", "eval", "--model", "no-such-run", "--benchmark", str(folder)]
    command += ["--workspace", str(tmp_path / "workspace")]
    failed = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PREFECT_API_URL": prefect_api})
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"tinylm eval: {folder / 'val' / 'college_programming_val.csv'}: row 3, column answer: "
        "answer 'Z' is not one of A, B, C, D"
    ), failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout


def test_the_leaderboard_puts_each_benchmark_on_a_row_and_each_category_in_a_column():
    def row(task: str, level: str, acc: float, items: int) -> dict:
        return {"task": task, "level": level, "acc": acc, "acc_norm": acc, "acc_stderr": None, "items": items}

    rows = [
        row("ceval/college_programming", "subject", 0.5, 4),
        row("ceval/basic_medicine", "subject", 0.25, 4),
        row("ceval/STEM", "category", 0.5, 4),
        row("ceval/Other", "category", 0.25, 4),
        row("ceval", "benchmark", 0.375, 8),
        row("hellaswag", "harness task", 0.3, 10),
    ]
    assert leaderboard(rows).splitlines() == [
        "benchmark  STEM   Other  Average  items",
        "ceval      0.500  0.250  0.375    8",
        "hellaswag                0.300    10",
        "",
        "ceval/college_programming  0.500  (4 items)",
        "ceval/basic_medicine       0.250  (4 items)",
    ]


MMLU, GAOKAO = DATA / "mmlu", DATA / "gaokao-bench"


def test_mmlu_is_read_without_a_header_row_scoring_its_test_split_with_dev_shots():
    """MMLU's own csv files (hendrycks/test): no header, the first question is an item, not column names."""
    tasks = {task.subject: task for task in local_tasks(MMLU)}
    physics = tasks["high_school_physics"]
    assert (physics.layout, physics.scored.name, physics.fewshot.name) == ("mmlu", "high_school_physics_test.csv",
                                                                           "high_school_physics_dev.csv")  # fmt: skip
    with physics.scored.open(encoding="utf-8", newline="") as handle:
        original = list(csv.reader(handle))
    rows = task_rows(physics, physics.scored)
    assert len(rows) == len(original) == 8
    assert [[row["question"], row["A"], row["B"], row["C"], row["D"], row["answer"]] for row in rows] == original
    assert {subject: categories(task) for subject, task in tasks.items()} == {
        "global_facts": ["Other"],
        "high_school_physics": ["STEM"],
    }


def test_an_mmlu_subject_is_prompted_exactly_as_the_harness_own_mmlu_task_prompts_it():
    """Our task config against one built from lm-evaluation-harness's MMLU yaml, fed the same rows in cais/mmlu's
    schema (choices as a list, the answer as an index)."""
    import datasets

    task = next(task for task in local_tasks(MMLU) if task.subject == "global_facts")
    as_cais = {
        split: datasets.Dataset.from_list(
            [
                {
                    "question": r["question"],
                    "choices": [r[letter] for letter in "ABCD"],
                    "answer": "ABCD".index(r["answer"]),
                }
                for r in task_rows(task, path)
            ]  # fmt: skip
        )
        for split, path in (("test", task.scored), ("dev", task.fewshot))
    }
    reference = {
        "task": "reference_mmlu_global_facts",
        "custom_dataset": lambda **_: datasets.DatasetDict(as_cais),
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": "The following are multiple choice questions (with answers) about global facts.\n\n",
        "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. "
        "{{choices[3]}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "metadata": {"version": 1.0},
    }
    built = get_task_dict([reference], TaskManager(include_defaults=False))["reference_mmlu_global_facts"]
    doc = next(iter(built.test_docs()))
    assert rendered(task, EvalConfig(num_fewshot=3)) == (built.fewshot_context(doc, 3), built.doc_to_target(doc))
    with pytest.raises(ValueError, match="chain_of_thought is C-Eval's Chinese prompt; mmlu"):
        check_settings(EvalConfig(benchmarks=[str(MMLU)], prompt="chain_of_thought"))


def test_gaokao_bench_scores_its_single_answer_items_and_counts_the_others(caplog, tmp_path):
    tasks = {task.subject: task for task in local_tasks(GAOKAO)}
    math, physics, chinese = (tasks[f"2010-2022_{name}"] for name in ("Math_II_MCQs", "Physics_MCQs",
                                                                         "Chinese_Lang_and_Usage_MCQs"))  # fmt: skip
    assert (len(task_rows(math, math.scored)), math.skipped) == (6, 0)
    assert (len(task_rows(physics, physics.scored)), physics.skipped) == (6, 6), "multi-select physics: AC, ABD..."
    assert (len(task_rows(chinese, chinese.scored)), chinese.skipped) == (5, 1), "a passage's three questions"
    assert categories(math) == ["Math"] and categories(chinese) == ["Chinese"]
    items = json.loads(math.scored.read_text("utf-8"))["example"]
    prompt, target = rendered(math, EvalConfig())
    assert (
        prompt
        == f"以下是中国高考数学的单项选择题，请直接给出正确答案的选项。\n\n{items[0]['question'].strip()}\n答案："
    )
    assert target == "ABCD".index(items[0]["answer"][0])
    reading = tmp_path / "gaokao" / "2010-2022_English_Reading_Comp.json"
    reading.parent.mkdir()
    shutil.copy(GAOKAO / "2010-2022_Math_II_MCQs.json", reading.parent)
    reading.write_text(json.dumps({"keywords": "x", "example": [{"question": "Passage", "answer": ["A", "C"]}]}))
    assert [task.subject for task in local_tasks(reading.parent)] == ["2010-2022_Math_II_MCQs"]
    assert "2010-2022_English_Reading_Comp.json: left out: all its 1 items have more than one answer" in caplog.text
