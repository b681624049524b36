"""The environment `make setup` builds: on a machine without CUDA, torch's CPU build and no CUDA packages."""

import shutil

import pytest

from scripts.check_torch import cpu_build_problems


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a CUDA machine: the CUDA build is the right one")
def test_a_machine_without_cuda_holds_the_cpu_build_of_torch():
    assert cpu_build_problems() == []
