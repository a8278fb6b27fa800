"""bench/gpu/scoring.py without a GPU says so and exits cleanly; bench/gpu/serving.py's variants reach its config."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_gpu_bench_without_a_gpu_exits_cleanly_with_the_reason():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run python bench/gpu/scoring.py itself")
    proc = subprocess.run(
        [sys.executable, "bench/gpu/scoring.py"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU to measure on (torch sees no CUDA GPU)" in proc.stdout


def test_serve_variants_set_what_they_name_and_refuse_what_they_cannot():
    """bench/gpu/serving.py's tuning variants: each one's settings reach the Serve config; a misspelt one is refused."""
    import argparse

    from bench.gpu.serving import parse_variants, serve_config

    variants = parse_variants("default;token_budget=16384,max_rows=64;call_target_s=0.03,gateways=2")
    assert variants == [{}, {"token_budget": 16384, "max_rows": 64}, {"call_target_s": 0.03, "gateways": 2}]
    base = {"graph_variant": "auto", "token_budget": None, "max_rows": None, "replicas": 2, "gateways": 1, "port": 1}
    config = serve_config(REPO / "models/x", "cuda", argparse.Namespace(**{**base, **variants[2]}))
    reranker, gateway = config["applications"][0]["deployments"]
    assert reranker["user_config"]["call_target_s"] == 0.03 and gateway["num_replicas"] == 2
    assert reranker["num_replicas"] == 2 and reranker["ray_actor_options"]["num_gpus"] == 0.5
    assert "autoscaling_config" not in reranker
    with pytest.raises(SystemExit, match="unknown setting 'token_buget'"):
        parse_variants("token_buget=1")
