"""eval flow: perplexity and benchmarks of a model, as MLflow metrics and tables and as Prefect table artifacts."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tinylm.config import EvalConfig
from tinylm.evaluation.evaluate import evaluate_model, headline
from tinylm.flows.report import prefect_link_tags, run_name
from tinylm.tracking.store import run_link

evaluate_model_task = task(evaluate_model, name="evaluate-model", cache_policy=NO_CACHE)


@flow(
    name="eval",
    description="Measure a model (perplexity per source and language, lm-evaluation-harness benchmarks) into MLflow.",
    flow_run_name=run_name("eval"),
)
def eval_flow(model: str, config: EvalConfig = EvalConfig(), workspace: str = "workspace") -> dict:
    """Measure a model; the same model, data and settings again returns the earlier results.

    Args:
        model: MLflow run id (its newest checkpoint), checkpoint directory, exported Hugging Face folder, or
        models:/NAME/VERSION
        config: the perplexity data, the benchmarks and how they are scored
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
    """
    tags = {"prefect.flow_run_id": str(flow_run.id)} | prefect_link_tags()
    result = evaluate_model_task(model, config, workspace, tags)
    publish_eval(result, workspace)
    return result


def publish_eval(result: dict, workspace: str) -> None:
    """The results as Prefect tables, and a summary that links the eval run."""
    scores = ("loss", "perplexity", "bits_per_byte", "acc", "acc_norm", "acc_stderr")
    for name in ("perplexity", "benchmarks"):
        rows = [{key: _shown(value) if key in scores else value for key, value in row.items()} for row in result[name]]
        if rows:
            create_table_artifact(key=f"eval-{name}", table=rows, description=f"eval: {name}")
    numbers = "; ".join(headline(result))
    done = "reused the earlier evaluation" if result["reused"] else "evaluated"
    summary = f"**eval** {done} of `{result['model']}`: {numbers}. MLflow run {run_link(workspace, result['run_id'])}"
    get_run_logger().info("eval: %s, run %s: %s", done, result["run_id"], numbers)
    create_markdown_artifact(key="eval-summary", markdown=summary, description="eval summary")


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
