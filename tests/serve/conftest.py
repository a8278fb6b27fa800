"""The serve tests' shared app of two models: the tiny VL reranker (the default) and the tiny text reranker."""

import pytest

from serve.launcher import wait_healthy
from tests.serve.apps import IMAGE_BUDGET, MAX_IMAGES, TEXT_ALIASES, TEXT_NAME, TINY, VL_NAME, deploy


@pytest.fixture(scope="package")
def vl_url(serve_url, tiny_vl_reranker):
    """App `vl`, strict model names: the built-in tiny VL model (exported once by the session's library fixture),
    the default, one replica, with small image caps (per request, and held at once), URLs fetched but never from
    loopback or private addresses; and the tiny text model, named with aliases, on a deployment of its own with two
    replicas at least."""
    from ray import serve

    vl = {"model": "builtin:tiny-qwen3-vl-reranker", "device": "cpu", "intra_op_threads": 1}
    models = [
        {"name": VL_NAME, "aliases": ["qwen3-vl-rerank"], "model": {**vl, "images": {"fetch_urls": True}}},
        {"name": TEXT_NAME, "aliases": TEXT_ALIASES, "model": TINY},
    ]
    images = {"max_images_per_request": MAX_IMAGES, "max_image_tokens_in_flight": IMAGE_BUDGET}
    args = {"models": models, "strict_model_names": True, "images": images}
    bounds = {
        f"Reranker-{VL_NAME}": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
        f"Reranker-{TEXT_NAME}": {"autoscaling_config": {"min_replicas": 2, "max_replicas": 3, "initial_replicas": 2}},
    }
    deploy("vl", args=args, options={"num_replicas": None}, by_deployment=bounds)
    try:
        wait_healthy(f"{serve_url}/vl", timeout_s=180)
        yield f"{serve_url}/vl"
    finally:
        serve.delete("vl")
