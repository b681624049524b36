"""Where llama.cpp's own Hugging Face → GGUF converter comes from, and how it is run.

llama.cpp's converter (`convert_hf_to_gguf.py`, its `conversion/` package and the `gguf` writer beside it) is not
on PyPI as a package that installs it; it ships inside the source distribution of `llama-cpp-python`, whose wheel
(built from that same source) is the llama.cpp that loads and quantizes the file. Taking both from one release of
`llama-cpp-python` keeps the writer and the reader in step. The converter's files are unpacked once into a cache
(`pip download` of the source, which pip caches too); `TINYLM_LLAMA_CPP` names a llama.cpp checkout instead, for a
machine without the registry.

Both the converter and the quantizer run in a child process (`python -m tinylm.export.gguf_convert`): the converter
is imported by putting its folder on `sys.path`, which stays out of tinylm's own process, and a crash in llama.cpp's
C code fails the export with its message instead of killing a flow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from filelock import FileLock

from tinylm.storage.atomic import atomic_path

LLAMA_CPP_PYTHON = "0.3.36"  # the release pyproject's `gguf` extra pins
SOURCE_VARIABLE = "TINYLM_LLAMA_CPP"
# What the converter needs from a llama.cpp tree: its model classes and the GGUF writer (with its licence).
_CONVERTER_PARTS = ("conversion/", "gguf-py/gguf/", "LICENSE")


def llama_cpp_version() -> str:
    """The installed `llama-cpp-python`, whose source the converter is taken from; the pinned release if none is."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return LLAMA_CPP_PYTHON


def converter_source(cache: Path | None = None) -> Path:
    """A llama.cpp tree holding the converter: `TINYLM_LLAMA_CPP`, else the cached unpacking of the installed
    `llama-cpp-python`'s source, unpacked now when it is not there yet."""
    named = os.environ.get(SOURCE_VARIABLE)
    if named:
        tree = Path(named)
        if not (tree / "conversion").is_dir() or not (tree / "gguf-py" / "gguf").is_dir():
            raise FileNotFoundError(
                f"{SOURCE_VARIABLE}={named} is not a llama.cpp checkout (no conversion/ and gguf-py/): name the "
                "folder that holds convert_hf_to_gguf.py, or unset it"
            )
        return tree
    version = llama_cpp_version()
    tree = (cache or _cache_root()) / f"llama.cpp-{version}"
    if (tree / "conversion").is_dir():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{tree}.lock"):  # one unpacking at a time; the others wait and take it
        if not (tree / "conversion").is_dir():
            with tempfile.TemporaryDirectory() as download:
                archive = _download_source(version, Path(download))
                with atomic_path(tree) as partial:
                    _unpack_converter(archive, partial)
    return tree


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tinylm"


def _download_source(version: str, directory: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}"]
    command += ["--no-binary", ":all:", "--no-deps", "--quiet", "-d", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = list(directory.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode or not archives:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no source archive came back"
        raise RuntimeError(
            f"could not download llama-cpp-python {version}'s source, which holds llama.cpp's GGUF converter "
            f"({reason}): connect to PyPI once, or set {SOURCE_VARIABLE} to a llama.cpp checkout"
        )
    return archives[0]


def _unpack_converter(archive: Path, destination: Path) -> None:
    """Only the converter's files, out of an archive of some 75 MB."""
    with tarfile.open(archive) as source:
        for member in source.getmembers():
            _, _, inside = member.name.partition("/vendor/llama.cpp/")
            if member.isfile() and inside.startswith(_CONVERTER_PARTS):
                target = destination / inside
                target.parent.mkdir(parents=True, exist_ok=True)
                with source.extractfile(member) as read, target.open("wb") as write:
                    shutil.copyfileobj(read, write)
    if not (destination / "conversion").is_dir():
        raise RuntimeError(f"{archive.name} holds no vendor/llama.cpp/conversion: this release is not one tinylm knows")


def run_converter_step(arguments: list[str]) -> None:
    """One step of `tinylm.export.gguf_convert` in a child process; its last line of error is the exception's."""
    command = [sys.executable, "-m", "tinylm.export.gguf_convert", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"llama.cpp's {arguments[0]} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
