"""bench/gpu.py on a machine without a GPU: it says so and exits cleanly (the GPU run itself needs a GPU)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_gpu_bench_without_a_gpu_exits_cleanly_with_the_reason():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run python bench/gpu.py itself")
    proc = subprocess.run([sys.executable, "bench/gpu.py"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "no GPU to measure on (torch sees no CUDA GPU)" in proc.stdout
