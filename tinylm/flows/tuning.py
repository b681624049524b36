"""The flows after supervised fine-tuning: grpo (encodes its prompts and checks its rewards on the reference solutions
first), merge (LoRA adapters folded into their base), and the flow of every training method that brings none of its
own, made from its registration (tinylm/registry.py), so a new method writes no flow code. All training flows share
train.py's body.

`dpo_flow`, `distill_flow` and a plugin method's `<name>_flow` are attributes of this module, made on first use, which
is what their deployments' and prefect.yaml's entrypoints (`tinylm/flows/tuning.py:dpo_flow`) name. Each takes the
method's input under the input's own name (`pairs`, `data`), its config, the workspace and extra MLflow tags.
"""

import inspect
from functools import cache
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import ValidationError

from tinylm.flows.report import prefect_link_tags, publish_stats, run_name
from tinylm.flows.train import train_stage
from tinylm.registry import Command, command, flow_attribute, training_methods
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.prompts import PromptsManifest
from tinylm.tracking.lineage import STAGE_TAG
from tinylm.tracking.store import run_link
from tinylm.training.merge import merge_adapters
from tinylm.training.methods.grpo import GrpoConfig, grpo_prompts, reference_check, reference_warning

grpo_prompts_task = task(grpo_prompts, name="encode-prompts", cache_policy=NO_CACHE)
reference_check_task = task(reference_check, name="check-rewards-on-references", cache_policy=NO_CACHE)


@flow(
    name="grpo",
    description="Reinforce an SFT run with verifiable rewards (GRPO): groups of sampled completions, scored and "
    "compared (optionally LoRA).",
    flow_run_name=run_name("grpo", "prompts"),
)
def grpo_flow(
    config: GrpoConfig,
    prompts: str,
    workspace: str = "workspace",
    tags: dict[str, str] | None = None,
) -> dict:
    """Train a policy from `config.init_run_id` (an SFT run) on the prompts' rewards, against a frozen reference.

    Args:
        config: the starting run, rewards, group size, sampling, clip and KL, and the usual optimizer and schedule
        prompts: JSON Lines of records with a `prompt` (or `messages`, or config.prompt_field) and the fields the
        rewards read, such as `answer` (relative: to where the serving process started)
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        tags: extra tags for the MLflow run
    """
    encoded = grpo_prompts_task(prompts, workspace, config)
    counts = read_manifest(encoded, PromptsManifest).stats
    get_run_logger().info(
        "grpo: %d prompts from %s (longest %d tokens), skipped %s",
        counts["prompts"],
        prompts,
        counts["longest_prompt"],
        counts.get("skipped") or "none",
    )
    check = reference_check_task(encoded, config)
    if check is not None:
        logger = get_run_logger()
        logger.info("grpo: accuracy scores %d of %d reference solutions 1.0", check.full_marks, check.records)
        if (warning := reference_warning(check, prompts)) is not None:
            logger.warning(warning)
    return train_stage("grpo", str(encoded), config, workspace, tags)


@flow(
    name="merge",
    description="Fold a LoRA run's adapters into their base weights as a new run.",
    flow_run_name=run_name("merge"),
)
def merge_flow(run_id: str, workspace: str = "workspace", experiment: str = "tinylm") -> dict:
    """Merge the newest adapters of LoRA run `run_id`; merging the same checkpoint again returns the earlier merged run.

    Args:
        run_id: the MLflow run that trained the adapters
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        experiment: the MLflow experiment the merged run goes to
    """
    tags = {"prefect.flow_run_id": str(flow_run.id), STAGE_TAG: "merge"} | prefect_link_tags()
    result = merge_adapters(run_id, workspace, experiment, tags)
    done = "reused the earlier merge of" if result["reused"] else "merged"
    get_run_logger().info("merge: %s %s into run %s", done, result["merged_from"], result["run_id"])
    publish_stats(
        "merge",
        result,
        summary=f"**merge** {done} `{result['merged_from']}`: MLflow run {run_link(workspace, result['run_id'])}",
    )
    return result


# This module's import path, also when Prefect loads it as a file (`tinylm/flows/tuning.py:dpo_flow`).
MODULE = "tinylm.flows.tuning"


@cache
def method_flow(name: str) -> Flow:
    """The flow of the method registered as `name`, with a signature Prefect draws the deployment's form from."""
    entry = command(name)
    model = entry.config_model()
    signature = _signature(entry, model)

    def run_method(*args: Any, **kwargs: Any) -> dict:
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        values = given.arguments
        return train_stage(name, values[entry.data.name], values["config"], values["workspace"], values["tags"])

    run_method.__signature__ = signature  # type: ignore[attr-defined]
    run_method.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {"return": dict}
    run_method.__name__ = run_method.__qualname__ = flow_attribute(name)
    run_method.__module__ = MODULE
    run_method.__doc__ = f"""{entry.summary}

    Args:
        {entry.data.name}: {entry.data.help} (relative: to where the serving process started)
        config: the method's settings, with the usual model, optimizer and schedule
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        tags: extra tags for the MLflow run
    """
    return flow(run_method, name=name, description=entry.summary, flow_run_name=run_name(name, entry.data.name))


def _signature(entry: Command, model: type) -> inspect.Signature:
    """(<input>, config, workspace, tags): the config defaults to the model's defaults where it has them all."""
    try:
        default = model()
    except ValidationError:  # a required setting (distillation's teacher): the form asks for it
        default = inspect.Parameter.empty
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [
            inspect.Parameter(entry.data.name, keyword, annotation=str),
            inspect.Parameter("config", keyword, annotation=model, default=default),
            inspect.Parameter("workspace", keyword, annotation=str, default="workspace"),
            inspect.Parameter("tags", keyword, annotation=dict[str, str] | None, default=None),
        ],
        return_annotation=dict,
    )


def __getattr__(attribute: str) -> Flow:
    for entry in training_methods():
        if entry.flow == f"{MODULE}:{attribute}":
            return method_flow(entry.name)
    raise AttributeError(f"module {MODULE} has no attribute {attribute}")
