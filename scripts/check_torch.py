"""Fail loudly when a machine without CUDA got torch's CUDA build (`make setup` runs this after each install).

    python scripts/check_torch.py --cpu     # this machine has no CUDA: expect the CPU build
    python scripts/check_torch.py           # print what is installed

A plain `torch` requirement pulls the CUDA build and about 3 GB of nvidia-* packages; a
later `pip install` can swap a CPU build for it without a word. This names what went wrong.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

import torch

# Packages only the CUDA build of torch pulls in.
CUDA_ONLY = ("nvidia-", "triton", "cuda-")


def cpu_build_problems() -> list[str]:
    """What in this environment is not the CPU build of torch, one line each; empty when all is well."""
    problems = []
    if torch.version.cuda is not None:
        problems.append(f"torch {torch.__version__} is the CUDA {torch.version.cuda} build")
    cuda_packages = sorted(
        {
            dist.metadata["Name"]
            for dist in metadata.distributions()
            if dist.metadata["Name"].lower().startswith(CUDA_ONLY)
        }
    )
    if cuda_packages:
        problems.append(f"CUDA packages installed: {', '.join(cuda_packages)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="fail unless this is the CPU build, without CUDA packages")
    args = parser.parse_args()
    problems = cpu_build_problems()
    if args.cpu and problems:
        print(
            f"check_torch: this machine has no CUDA, but {'; '.join(problems)}. "
            "Remove .venv and run `make setup` again (it pins torch's CPU build).",
            file=sys.stderr,
        )
        return 1
    print(f"torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
