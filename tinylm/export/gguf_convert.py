"""The child process of a GGUF export (see `llama_cpp.py`): `convert` runs llama.cpp's converter on a Hugging Face
folder, `quantize` runs llama.cpp's quantizer on the file it wrote.

    python -m tinylm.export.gguf_convert convert LLAMA_CPP_TREE HF_FOLDER OUT.gguf f32|f16|bf16
    python -m tinylm.export.gguf_convert quantize IN.gguf OUT.gguf q8_0|q6_k|q5_k_m|q4_k_m

The converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a test string, and stops at a hash it
has never seen, which a freshly trained tokenizer always has; llama.cpp's advice is to add the hash to the
converter. tinylm's tokenizers split with GPT-2's byte-level regex (the parent checks the tokenizer says so), so
the conversion names that pre-tokenizer, `gpt-2`, and nothing in llama.cpp is patched.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

FLOAT_TYPES = ("f32", "f16", "bf16")
QUANT_TYPES = {"q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q4_k_m": 15}  # llama.cpp's enum llama_ftype
GGUF_TYPES = (*FLOAT_TYPES, *QUANT_TYPES)


def convert(tree: Path, hf_folder: Path, output: Path, outtype: str) -> None:
    sys.path[:0] = [str(tree), str(tree / "gguf-py")]
    import gguf
    import torch
    from conversion import ModelBase, get_model_class

    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    }
    converter = get_model_class(ModelBase.load_hparams(hf_folder, False)["architectures"][0])

    class Gpt2PreTokenized(converter):  # type: ignore[misc, valid-type]
        model_arch = converter.model_arch

        def set_vocab(self) -> None:
            """Byte-level BPE, read through `transformers` (the converter's SentencePiece and Llama-2 attempts
            skipped), with no BOS: tinylm's prompts start with their first token."""
            self._set_vocab_gpt2()
            self.gguf_writer.add_add_bos_token(False)

        def get_vocab_base_pre(self, tokenizer: object) -> str:
            return "gpt-2"

    with torch.inference_mode():
        Gpt2PreTokenized(hf_folder, file_types[outtype], output).write()


def quantize(source: Path, output: Path, quant: str) -> None:
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant]
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(), ctypes.byref(params)):
        raise RuntimeError(f"llama_model_quantize refused {source.name} as {quant}")


if __name__ == "__main__":
    step, *arguments = sys.argv[1:]
    if step == "convert":
        convert(Path(arguments[0]), Path(arguments[1]), Path(arguments[2]), arguments[3])
    else:
        quantize(Path(arguments[0]), Path(arguments[1]), arguments[2])
