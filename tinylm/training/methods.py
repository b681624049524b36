"""Which objective a training config asks for, with the frozen models it needs: a DPO reference, a teacher.

The config's class is the method: `TrainConfig` pretrains or fine-tunes (SFT), `DpoConfig`
optimises preferences, `DistillConfig` distils a teacher. Each checks that the data and
the models it was given fit together, with an error that says what to change.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import torch

from tinylm.config import DistillConfig, DpoConfig, TrainConfig
from tinylm.model.transformer import Transformer
from tinylm.training.checkpointer import Initial, initial_weights
from tinylm.training.data import ChatData, PretrainData
from tinylm.training.objectives import Distillation, LanguageModeling, Preference
from tinylm.training.reference import ReferenceLogps

Objective = LanguageModeling | Preference | Distillation


def check_data(config: TrainConfig, data: PretrainData | ChatData) -> None:
    """DPO trains on preference pairs and nothing else does."""
    if isinstance(config, DpoConfig) != (data.format == "dpo"):
        wanted = "chat-data --format dpo" if isinstance(config, DpoConfig) else "token shards or chat-data --format sft"
        raise ValueError(f"{data.directory} holds {data.format} data; this training reads {wanted} output")
    if isinstance(config, DpoConfig) and not (config.init_run_id or config.reference_run_id):
        raise ValueError("DPO starts from a fine-tuned model: set init_run_id (--init) to the SFT run; the reference defaults to it")
    if config.lora is not None and not config.init_run_id:
        raise ValueError("LoRA trains adapters on existing weights: set init_run_id (--init) to the run they adapt")


def frozen_model(initial: Initial, device: torch.device) -> Transformer:
    model = Transformer(initial.model_config)
    model.load_state_dict(initial.weights)
    return model.to(device).eval().requires_grad_(False)


def build_objective(
    config: TrainConfig,
    data: PretrainData | ChatData,
    initial: Initial | None,
    workspace: Path,
    device: torch.device,
    autocast: AbstractContextManager,
) -> Objective:
    """The objective for this config, its reference or teacher loaded (and, for DPO, validation prepared)."""
    if isinstance(config, DpoConfig):
        reference = initial if not config.reference_run_id else initial_weights(config.reference_run_id, workspace, data.manifest)
        identity = {"run_id": reference.run_id, "checkpoint": reference.checkpoint, "seq_len": config.seq_len, "device": device.type}
        logps = ReferenceLogps(frozen_model(reference, device), data, device, autocast, identity if config.precompute_reference else None)
        if config.eval_batches:
            logps.start_validation()
        return Preference(config.beta, logps, logps.start_shard)
    if isinstance(config, DistillConfig):
        teacher = initial_weights(config.teacher_run_id, workspace, None)
        if teacher.tokenizer_sha256 != data.manifest["tokenizer_sha256"]:
            raise ValueError(
                f"teacher run {config.teacher_run_id} was trained with tokenizer {teacher.tokenizer_sha256[:12]}, the data is "
                f"{data.manifest['tokenizer_sha256'][:12]}: distillation compares distributions over one vocabulary"
            )
        if teacher.model_config.max_seq_len < config.seq_len:
            raise ValueError(f"seq_len {config.seq_len} exceeds the teacher's max_seq_len {teacher.model_config.max_seq_len}")
        return Distillation(frozen_model(teacher, device), config.temperature, config.kl_weight)
    return LanguageModeling()
