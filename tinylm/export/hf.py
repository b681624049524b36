"""Export a checkpoint as a Hugging Face folder.

The folder (safetensors weights, `config.json`, the tokenizer with its chat template) is the architecture
`model.hf_mapping` names for the checkpoint's shape: Llama for a dense model, Mixtral or Granite-MoE for a mixture
of experts, each of which `transformers.AutoModelForCausalLM`, vLLM and llama.cpp run with the same logits.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from tinylm.model.hf_mapping import DTYPES, hf_config, hf_state_dict
from tinylm.storage.atomic import atomic_path
from tinylm.storage.checkpoints import load_checkpoint
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE, hf_tokenizer_files
from tinylm.weights.reference import HF_CONFIG_FILE, WEIGHTS_FILE, full_weights


def export_hf(
    checkpoint_dir: str | Path,
    output_dir: str | Path,
    workspace: str | Path | None = None,
    dtype: str = "float32",
    context: int | None = None,
) -> Path:
    """Write the checkpoint's weights (as `dtype`: float32, bfloat16 or float16), config and tokenizer as a Hugging
    Face folder (atomically). `context` past the trained one is written as YaRN `rope_scaling`.

    A LoRA checkpoint is exported merged: its adapters folded into its base (found in
    `workspace`, else in MLflow), so the folder loads anywhere without PEFT.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one the export writes: use {', '.join(DTYPES)}")
    found = load_checkpoint(Path(checkpoint_dir))
    meta = found[1]
    model, config = full_weights(found, None if workspace is None else Path(workspace))
    config = config.with_context(context)
    weights = {name: tensor.to(DTYPES[dtype]).contiguous() for name, tensor in hf_state_dict(model, config).items()}
    output_dir = Path(output_dir)
    with atomic_path(output_dir) as tmp:
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / HF_CONFIG_FILE).write_text(
            json.dumps(hf_config(config, meta["eos_id"], dtype), indent=2), encoding="utf-8"
        )
        (tmp / TOKENIZER_FILE).write_bytes((Path(checkpoint_dir) / TOKENIZER_FILE).read_bytes())
        for name, content in hf_tokenizer_files(config.max_seq_len).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return output_dir
