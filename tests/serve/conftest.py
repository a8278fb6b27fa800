"""The serve tests' shared app of two models: the tiny VL reranker (the default) and the tiny text reranker."""

import pytest

from serve.launcher import wait_healthy
from tests.serve.apps import MAX_IMAGES, TEXT_ALIASES, TEXT_NAME, TINY, VL_NAME, deploy


@pytest.fixture(scope="package")
def vl_url(serve_url, tiny_vl_reranker):
    """App `vl`: the built-in tiny VL model (exported once by the session's library fixture), the default, with a
    small image cap, URLs fetched but never from loopback or private addresses; beside it the tiny text model,
    named with aliases, on a deployment of its own."""
    from ray import serve

    vl = {"model": "builtin:tiny-qwen3-vl-reranker", "device": "cpu", "intra_op_threads": 1}
    models = [
        {"name": VL_NAME, "aliases": ["qwen3-vl-rerank"], "model": {**vl, "images": {"fetch_urls": True}}},
        {"name": TEXT_NAME, "aliases": TEXT_ALIASES, "model": TINY},
    ]
    deploy("vl", args={"models": models, "images": {"max_images_per_request": MAX_IMAGES}})
    try:
        wait_healthy(f"{serve_url}/vl", timeout_s=180)
        yield f"{serve_url}/vl"
    finally:
        serve.delete("vl")
