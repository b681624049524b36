"""Export a checkpoint as a GGUF file for llama.cpp and ollama, with an ollama `Modelfile` beside it.

The way there is the one llama.cpp documents: the Hugging Face folder `export_hf` writes, converted by llama.cpp's
own converter (`llama_cpp.py`), and quantized by llama.cpp's own quantizer. tinylm writes no GGUF bytes itself, so a
file that llama.cpp's writer made is one its reader takes; what tinylm adds is the name of its tokenizer's
pre-tokenizer (see `gguf_convert.py`) and the Modelfile.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

from tinylm.export.gguf_convert import FLOAT_TYPES, GGUF_TYPES
from tinylm.export.hf import export_hf
from tinylm.export.llama_cpp import converter_source, run_converter_step
from tinylm.export.ollama import modelfile
from tinylm.storage.atomic import atomic_path
from tinylm.tokens.tokenizer_files import TOKENIZER_FILE
from tinylm.weights.reference import HF_CONFIG_FILE

MODELFILE = "Modelfile"


def gguf_name(quant: str) -> str:
    return f"model-{quant}.gguf"


def export_gguf(
    checkpoint_dir: str | Path,
    output_dir: str | Path,
    workspace: str | Path | None = None,
    quant: str = "q8_0",
    context: int | None = None,
) -> Path:
    """Write `output_dir` (atomically) holding `model-<quant>.gguf` and an ollama `Modelfile` that points at it.

    f32, f16 and bf16 come straight from the converter; the quantized types are quantized from an f32 file, as
    llama.cpp's README does it.
    """
    if quant not in GGUF_TYPES:
        raise ValueError(f"quant {quant!r} is not one llama.cpp writes here: use {', '.join(GGUF_TYPES)}")
    missing = [name for name in ("llama_cpp", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"GGUF export runs llama.cpp's converter, which needs {' and '.join(missing)}: pip install 'tinylm[gguf]'"
        )
    checkpoint_dir = Path(checkpoint_dir)
    require_gpt2_byte_level(checkpoint_dir / TOKENIZER_FILE)
    tree = converter_source()
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory() as scratch, atomic_path(output_dir) as partial:
        partial.mkdir(parents=True)
        folder = export_hf(checkpoint_dir, Path(scratch) / "hf", workspace, context=context)
        target = partial / gguf_name(quant)
        if quant in FLOAT_TYPES:
            run_converter_step(["convert", str(tree), str(folder), str(target), quant])
        else:
            full = Path(scratch) / gguf_name("f32")
            run_converter_step(["convert", str(tree), str(folder), str(full), "f32"])
            run_converter_step(["quantize", str(full), str(target), quant])
        shape = json.loads((folder / HF_CONFIG_FILE).read_text(encoding="utf-8"))
        (partial / MODELFILE).write_text(modelfile(target.name, shape["max_position_embeddings"]), encoding="utf-8")
    return output_dir


def require_gpt2_byte_level(tokenizer_file: Path) -> None:
    """Refuse a tokenizer that llama.cpp's `gpt-2` pre-tokenizer would split differently from `tokenizers`: only
    byte-level BPE with GPT-2's regex and no prefix space (what `tinylm tokenizer` trains) is exported."""
    pre = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        raise ValueError(
            f"{tokenizer_file} splits text with {json.dumps(pre)}, not GPT-2's byte-level regex: llama.cpp would "
            "tokenize it differently, so GGUF export takes tokenizers trained by tinylm only"
        )
