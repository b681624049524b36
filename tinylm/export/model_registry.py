"""Exports as versions in the MLflow model registry, each pointing at its folder in the training run's artifacts."""

from __future__ import annotations

from pathlib import Path

from tinylm.tracking.store import client

HF_ARTIFACT_PATH, GGUF_ARTIFACT_PATH = "hf-model", "gguf"
FORMATS = {HF_ARTIFACT_PATH: "huggingface", GGUF_ARTIFACT_PATH: "gguf"}


def register_model(run_id: str, export_dir: str | Path, name: str, artifact_path: str = HF_ARTIFACT_PATH) -> int:
    """Log the exported folder to the run under `artifact_path` and make it a new version of registered model
    `name`; returns the version.

    Through the client, not `start_run`: reopening the finished training run would move its end time.
    The version says where it came from: its source run, a description, and the run's final metrics as tags.
    """
    registry = client()
    registry.log_artifacts(run_id, str(export_dir), artifact_path)
    run = registry.get_run(run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    if not registry.search_registered_models(f"name = '{name}'"):
        registry.create_registered_model(
            name, description="tinylm models, exported as Hugging Face folders or GGUF files"
        )
    metrics = {key: value for key, value in run.data.metrics.items() if key in ("loss", "val_loss", "val_perplexity")}
    shown = ", ".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items()))
    description = f"Exported from training run {run.info.run_name or run_id} ({run_id}){': ' + shown if shown else ''}."
    tags = {f"metric.{key}": f"{value:.6g}" for key, value in metrics.items()} | {
        "params": run.data.params.get("parameters", ""),
        "format": FORMATS[artifact_path],
    }
    return int(registry.create_model_version(name, source, run_id=run_id, description=description, tags=tags).version)
