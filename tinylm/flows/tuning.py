"""The flows after supervised fine-tuning: dpo (preference pairs), grpo (verifiable rewards), distill (a teacher's
distributions) and merge (LoRA adapters folded into their base). The training flows share train.py's body."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tinylm.flows.report import prefect_link_tags, publish_stats, run_name
from tinylm.flows.train import train_stage
from tinylm.storage.manifest import read_manifest
from tinylm.tracking.lineage import STAGE_TAG
from tinylm.tracking.store import run_link
from tinylm.training.merge import merge_adapters
from tinylm.training.methods.distill import DistillConfig
from tinylm.training.methods.dpo import DpoConfig
from tinylm.training.methods.grpo import GrpoConfig, grpo_prompts, reference_check, reference_warning

grpo_prompts_task = task(grpo_prompts, name="encode-prompts", cache_policy=NO_CACHE)
reference_check_task = task(reference_check, name="check-rewards-on-references", cache_policy=NO_CACHE)


@flow(
    name="dpo",
    description="Preference-optimise an SFT run on DPO pairs against a frozen reference (optionally LoRA).",
    flow_run_name=run_name("dpo", "pairs"),
)
def dpo_flow(
    pairs: str = "workspace/dpo/default",
    config: DpoConfig = DpoConfig(),
    workspace: str = "workspace",
    tags: dict[str, str] | None = None,
) -> dict:
    """Train a policy from `config.init_run_id` (an SFT run) on preference pairs against a frozen reference.

    Args:
        pairs: directory of `chat-data --format dpo` output (relative: to where the serving process started)
        config: beta, the reference, LoRA, and the usual optimizer and schedule
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        tags: extra tags for the MLflow run
    """
    return train_stage("dpo", pairs, config, workspace, tags)


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
    manifest = read_manifest(encoded)
    counts = manifest["stats"]
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
    name="distill",
    description="Distil a teacher run into a student (KL to its token distributions, mixed with cross entropy).",
    flow_run_name=run_name("distill", "data"),
)
def distill_flow(
    config: DistillConfig,
    data: str = "workspace/sft/default",
    workspace: str = "workspace",
    tags: dict[str, str] | None = None,
) -> dict:
    """Distil `config.teacher_run_id` into a student (the config's model shape, or `init_run_id`'s weights).

    Args:
        config: the teacher, temperature, KL weight, the student's shape and its training
        data: chat data (SFT) or token shards, tokenized with the teacher's tokenizer (relative: to where the serving
        process started)
        workspace: home of the checkpoints and the MLflow store (relative: to where the serving process started)
        tags: extra tags for the MLflow run
    """
    return train_stage("distill", data, config, workspace, tags)


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
