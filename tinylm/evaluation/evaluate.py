"""`tinylm eval`: perplexity and benchmarks of one model, recorded in MLflow beside the run that trained it.

An evaluation is keyed by what decides its numbers: the model's weights (hashed, so a
checkpoint, its run id and its exported folder are the same model), the scored data's
fingerprints and the settings. The same evaluation again returns the finished run; one a
kill interrupted is taken up again from the start (it is minutes, not hours).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from mlflow.exceptions import MlflowException

from tinylm.config import EvalConfig
from tinylm.evaluation.benchmarks import check_settings, run_benchmarks
from tinylm.evaluation.perplexity import data_fingerprint, perplexity
from tinylm.evaluation.records import eval_results, eval_run, finished_eval, log_results, log_summary, metric_name
from tinylm.export.hf import export_hf
from tinylm.inference.generate import LoadedModel, load_located
from tinylm.storage.benchmark_files import local_tasks
from tinylm.storage.manifest import content_hashes, fingerprint, read_manifest
from tinylm.tracking.locks import work_lock
from tinylm.tracking.store import client, use_experiment
from tinylm.training.trainer import pick_device
from tinylm.weights.reference import LocatedModel, locate_model

STAGE = "eval"


def weights_sha256(loaded: LoadedModel) -> str:
    """The model's identity: its weights, whichever form they were loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(loaded.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def evaluate_model(
    model: str, config: EvalConfig, workspace: str, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Perplexity on each of `config.perplexity_data` and the benchmarks of `config.benchmarks`, logged to an
    `eval` run nested under the model's run (and its headline numbers to that run); returns the results."""
    if not config.perplexity_data and not config.benchmarks:
        raise ValueError("nothing to evaluate: give perplexity data (--data) or benchmarks (--benchmark)")
    # The benchmark folders are read and checked before the model is loaded: a bad item fails in a second.
    check_settings(config)
    with tempfile.TemporaryDirectory() as scratch:
        located = locate_model(model, Path(workspace), Path(scratch))
        return _evaluate(located, model, config, workspace, tags or {})


def _evaluate(
    located: LocatedModel, model: str, config: EvalConfig, workspace: str, tags: dict[str, str]
) -> dict[str, Any]:
    started = time.time()
    experiment_id = use_experiment(config.experiment, workspace)
    loaded = load_located(located, workspace)
    # Nested under the run that trained the model where this store knows it (a copied workspace may name another's).
    model_run_id = located.run_id if located.run_id and _known_run(located.run_id) else None
    data = {path: data_fingerprint(path) for path in config.perplexity_data}
    benchmarks = {entry: _benchmark_fingerprint(entry) for entry in config.benchmarks}
    settings = config.model_dump(
        mode="json", exclude={"device", "experiment", "batch_size", "perplexity_data", "benchmarks"}
    )
    key = fingerprint(STAGE, settings, {"weights": weights_sha256(loaded)} | data | benchmarks)
    # Held from the lookup to the end, so a second evaluation of the same model and data waits, then reuses this one.
    with work_lock(workspace, f"eval-{key[:16]}", "evaluation"):
        if (done := finished_eval(experiment_id, key)) is not None:
            return eval_results(done) | {"run_id": done, "reused": True}
        data_tags = {f"tinylm.data.{data_label(path)}": value[:16] for path, value in data.items()}
        run_tags = {"tinylm.stage": STAGE, "tinylm.model": model} | data_tags | prompt_tags(config)
        nesting = {"mlflow.parentRunId": model_run_id} if model_run_id else {}
        device = pick_device(config.device)
        with eval_run(experiment_id, key, config.model_dump(mode="json"), run_tags | nesting | tags) as run_id:
            ppl_rows = [
                {"data": data_label(path), "group": group, **scores, "fingerprint": data[path][:16]}
                for path in config.perplexity_data
                for group, scores in perplexity(loaded, path, config, device).items()
            ]
            bench_rows = _benchmark_rows(located, config, workspace, device.type) if config.benchmarks else []
            tables = {"perplexity": ppl_rows, "benchmarks": bench_rows}
            log_results(run_id, model_run_id, located.step, headline_metrics(ppl_rows, bench_rows), tables)
            summary = {"model": model, "model_run_id": model_run_id, **tables}
            log_summary(run_id, summary | {"seconds": round(time.time() - started, 1)})
        return summary | {"run_id": run_id, "reused": False}


def prompt_tags(config: EvalConfig) -> dict[str, str]:
    """How the benchmarks were asked, as tags the runs list can filter and compare on."""
    if not config.benchmarks:
        return {}
    return {
        "tinylm.eval.prompt": config.prompt,
        "tinylm.eval.chat_template": str(config.apply_chat_template).lower(),
    }


def headline(result: dict[str, Any]) -> list[str]:
    """The numbers worth a line: each data set's overall perplexity and each benchmark's pooled accuracy."""
    lines = [
        f"{row['data']} perplexity {row['perplexity']:.2f}" for row in result["perplexity"] if row["group"] == "all"
    ]
    return lines + [
        f"{row['task']} acc {row['acc']:.3f} ({row['items']} items)"
        for row in result["benchmarks"]
        if row.get("level") in ("benchmark", "harness task")
    ]


def data_label(path: str) -> str:
    """How results name a data set: `corpus/<name>` or `shards/<name>` for a stage's directory (a pipeline's corpus
    and shards share their name), the file name for a file."""
    manifest = read_manifest(path) if Path(path).is_dir() else None
    return f"{manifest.stage}/{Path(path).name}" if manifest else Path(path).name


def headline_metrics(ppl_rows: list[dict[str, Any]], bench_rows: list[dict[str, Any]]) -> dict[str, float]:
    """`eval/<data>/<group>/perplexity|bits_per_byte` and `eval/<task>/acc|acc_norm`."""
    metrics = {
        metric_name("eval", row["data"], row["group"], key): row[key]
        for row in ppl_rows
        for key in ("perplexity", "bits_per_byte")
    }
    return metrics | {
        metric_name("eval", row["task"], key): row[key] for row in bench_rows for key in ("acc", "acc_norm")
    }


def _known_run(run_id: str) -> bool:
    try:
        client().get_run(run_id)
    except MlflowException:
        return False
    return True


def _benchmark_fingerprint(entry: str) -> str:
    path = Path(entry)
    if not path.is_dir():
        return entry  # a harness task: its name (and the harness's version, in the results) say what it is
    files = [str(file) for task in local_tasks(path) for file in (task.scored, task.fewshot) if file]
    return fingerprint("benchmark", {}, content_hashes(files))


def _benchmark_rows(located: LocatedModel, config: EvalConfig, workspace: str, device: str) -> list[dict[str, Any]]:
    """lm-evaluation-harness on the model as a Hugging Face folder: the folder located, or the checkpoint exported."""
    if located.exported:
        return run_benchmarks(located.directory, config, device)
    with tempfile.TemporaryDirectory() as scratch:
        return run_benchmarks(export_hf(located.directory, Path(scratch) / "hf", workspace), config, device)
