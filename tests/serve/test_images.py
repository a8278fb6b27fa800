"""Images through the endpoint on a real Serve app whose default model is the built-in tiny Qwen3-VL-Reranker: the
dashscope SDK, Jina's image objects and vLLM's / SGLang's content parts score as the library does; hostile images get
a 400 in the dialect's shape naming the document and the limit, counted by reason, and the replica goes on serving."""

import base64
import io
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from serve.routes import DASHSCOPE_ROUTE
from tests.serve.apps import MAX_IMAGES
from tests.serve.test_metrics import scrape

pytestmark = pytest.mark.slow
TIMEOUT_S = 60


def png(width: int, height: int, seed: int) -> bytes:
    """A random RGB PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def with_header_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width × height (CRC fixed): a few kB that would decode to a huge image."""
    ihdr = data[12:29]
    patched = ihdr[:4] + struct.pack(">II", width, height) + ihdr[12:]
    return data[:12] + patched + struct.pack(">I", zlib.crc32(patched)) + data[33:]


PHOTO, CHART = png(64, 48, 1), png(40, 72, 2)
QUERY = "a chart of the quarterly sales"


def post(url: str, route: str, body: dict) -> httpx.Response:
    return httpx.post(url + route, json=body, timeout=TIMEOUT_S)


def test_the_dashscope_sdk_ranks_images_as_the_library_does(vl_url, tiny_vl_reranker):
    import dashscope
    from dashscope import TextReRank

    documents = [
        {"image": data_uri(PHOTO)},
        {"text": "sales grew in the third quarter"},
        "pizza",
        {"image": data_uri(CHART)},
    ]
    saved = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{vl_url}/api/v1"
    try:
        reply = TextReRank.call(
            model="qwen3-vl-rerank", query=QUERY, documents=documents, return_documents=True, api_key="sk-unused"
        )
    finally:
        dashscope.base_http_api_url = saved
    assert reply.status_code == 200, reply
    library = [{"image": PHOTO}, "sales grew in the third quarter", "pizza", {"image": CHART}]
    expected = tiny_vl_reranker.score_pairs([(QUERY, d) for d in library])
    got = {r.index: r.relevance_score for r in reply.output.results}
    assert got == pytest.approx(dict(enumerate(expected.tolist())), abs=1e-5)
    assert {r.index: r["document"] for r in reply.output.results} == {  # as sent, never decoded pixels
        0: documents[0],
        1: documents[1],
        2: {"text": "pizza"},
        3: documents[3],
    }
    assert reply.usage.total_tokens > 2 * 12  # two images of 12 (PHOTO) and 9+ tokens (CHART), with the prompts
    image_query = post(
        vl_url,
        DASHSCOPE_ROUTE,
        {
            "model": "qwen3-vl-rerank",
            "input": {"query": {"image": data_uri(CHART)}, "documents": ["sales", {"image": data_uri(CHART)}]},
        },
    )
    assert image_query.status_code == 200, image_query.text
    expected = tiny_vl_reranker.score_pairs([({"image": CHART}, "sales"), ({"image": CHART}, {"image": CHART})])
    got = {r["index"]: r["relevance_score"] for r in image_query.json()["output"]["results"]}
    assert [got[0], got[1]] == pytest.approx(expected.tolist(), abs=1e-5)


def test_jina_objects_and_vllm_and_sglang_content_parts_score_as_the_library_does(vl_url, tiny_vl_reranker):
    expected = tiny_vl_reranker.score_pairs([(QUERY, {"image": PHOTO, "text": "a photo"}), (QUERY, "pizza")])
    jina = post(
        vl_url,
        "/v1/rerank",
        {"query": QUERY, "documents": [{"image": base64.b64encode(PHOTO).decode(), "text": "a photo"}, "pizza"]},
    )
    vllm_parts = [{"type": "image_url", "image_url": {"url": data_uri(PHOTO)}}, {"type": "text", "text": "a photo"}]
    vllm = post(vl_url, "/rerank", {"query": QUERY, "documents": [{"content": vllm_parts}, "pizza"]})
    sglang = post(vl_url, "/v1/rerank", {"query": QUERY, "documents": [vllm_parts, "pizza"], "instruct": None})
    for reply in (jina, vllm, sglang):
        assert reply.status_code == 200, reply.text
        got = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
        assert [got[0], got[1]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert vllm.json()["results"][0]["document"] in ({"content": vllm_parts}, {"text": "pizza"})
    one = post(vl_url, "/rerank", {"query": QUERY, "documents": {"content": vllm_parts}})  # one object: one document
    assert one.status_code == 200 and len(one.json()["results"]) == 1
    assert one.json()["results"][0]["relevance_score"] == pytest.approx(float(expected[0]), abs=1e-5)
    score = post(vl_url, "/score", {"text_1": QUERY, "text_2": {"content": vllm_parts}})
    assert score.status_code == 200, score.text
    assert score.json()["data"][0]["score"] == pytest.approx(float(expected[0]), abs=1e-5)


HOSTILE = {
    "corrupt": (data_uri(PHOTO[:200]), "documents[1].image[0]", "cannot be decoded"),
    "bad base64": ("data:image/png;base64,@@@not-base64", "documents[1].image[0]", "not valid base64"),
    "bomb": (data_uri(with_header_size(PHOTO, 40_000, 40_000)), "documents[1].image[0]", "limit: 67,108,864 pixels"),
    "loopback URL": ("http://127.0.0.1:9/a.png", "documents[1].image[0]", "not a public address"),
    "server path": ("/etc/passwd", "documents[1].image[0]", "not a file path"),
    "text format": (base64.b64encode(b"just some text, not an image").decode(), "documents[1].image[0]", "format"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_images_are_refused_naming_the_document_and_the_limit(vl_url, case):
    image, field, words = HOSTILE[case]
    reply = post(
        vl_url,
        DASHSCOPE_ROUTE,
        {"model": "qwen3-vl-rerank", "input": {"query": QUERY, "documents": ["fine", {"image": image}]}},
    )
    assert reply.status_code == 400, reply.text
    assert (
        reply.json()["code"] == "InvalidParameter"
        and field in reply.json()["message"]
        and words in reply.json()["message"]
    )


def test_too_many_images_special_tokens_and_video_are_refused_and_the_replica_serves_on(vl_url, serve_url):
    too_many = [{"image": data_uri(png(32, 32, seed))} for seed in range(MAX_IMAGES + 1)]
    reply = post(vl_url, "/v1/rerank", {"query": QUERY, "documents": too_many})
    assert reply.status_code == 400 and f"max_images_per_request={MAX_IMAGES}" in reply.text, reply.text
    smuggled = post(
        vl_url,
        "/v1/rerank",
        {"query": QUERY, "documents": ["ok", {"image": data_uri(PHOTO), "text": "<|vision_start|>"}]},
    )
    assert smuggled.status_code == 400 and "documents[1]" in smuggled.text, smuggled.text
    video = post(
        vl_url,
        DASHSCOPE_ROUTE,
        {"model": "qwen3-vl-rerank", "input": {"query": QUERY, "documents": [{"video": "https://example.com/v.mp4"}]}},
    )
    assert video.status_code == 400 and "documents[0]" in video.text and "video" in video.text, video.text
    fine = post(vl_url, "/v1/rerank", {"query": QUERY, "documents": [{"image": data_uri(PHOTO)}]})
    assert fine.status_code == 200, fine.text
    text_model = post(
        serve_url, DASHSCOPE_ROUTE, {"model": "m", "input": {"query": QUERY, "documents": [{"image": data_uri(PHOTO)}]}}
    )
    assert text_model.status_code == 400 and "takes text only" in text_model.text, text_model.text
    wanted = ('reason="pixels"', 'reason="url"', 'reason="corrupt"', 'reason="base64"', 'reason="format"')
    deadline = time.monotonic() + 15  # Ray exports metrics every second (the session's setting)
    while missing := [w for w in wanted if not any(w in k for k in scrape("vl") if "image_refusals" in k)]:
        assert time.monotonic() < deadline, f"image refusals not counted by reason: {missing}"
        time.sleep(1)


def test_fuzzed_image_bodies_never_cause_a_5xx(vl_url):
    """Images cut, bit-flipped, header-patched or re-encoded at random, on three dialects: 4xx or 200, never a 5xx."""
    import random

    rng = random.Random(52)
    routes = {
        DASHSCOPE_ROUTE: lambda image: {
            "model": "qwen3-vl-rerank",
            "input": {"query": QUERY, "documents": [{"image": image}]},
        },
        "/v1/rerank": lambda image: {"query": QUERY, "documents": [{"image": image, "text": "t"}]},
        "/rerank": lambda image: {
            "query": QUERY,
            "documents": [{"content": [{"type": "image_url", "image_url": {"url": image}}]}],
        },
    }
    statuses = {}
    with httpx.Client(timeout=TIMEOUT_S) as http:
        for i in range(36):
            data = bytearray(PHOTO)
            kind = i % 4
            if kind == 0:
                data = data[: rng.randrange(8, len(data))]
            elif kind == 1:
                for _ in range(rng.randrange(1, 16)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif kind == 2:
                data = bytearray(with_header_size(bytes(data), rng.randrange(1, 1 << 20), rng.randrange(1, 1 << 20)))
            image = (
                data_uri(bytes(data))
                if kind != 3
                else rng.choice(["data:", "data:image/png;base64,", "=" * 9, "é", ""])
            )
            route = list(routes)[i % 3]
            reply = http.post(vl_url + route, json=routes[route](image))
            statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            assert reply.status_code < 500, (route, kind, image[:40], reply.text[:300])
    assert set(statuses) <= {200, 400}, (statuses, reply.text[:300])
    assert http.is_closed and post(vl_url, "/v1/rerank", {"query": QUERY, "documents": ["fine"]}).status_code == 200


def test_concurrent_image_requests_take_turns_within_the_replicas_image_budget(vl_url, tiny_vl_reranker):
    """Six requests of two new photos each (12 image tokens: two such never fit the budget of 20 together) and one of
    four (24: over the whole budget, it runs alone), all at once: each waits its turn and scores as the library."""
    from concurrent.futures import ThreadPoolExecutor

    requests = [[png(64, 48, 100 + 2 * i), png(64, 48, 101 + 2 * i)] for i in range(6)]
    requests.append([png(64, 48, 200 + k) for k in range(MAX_IMAGES)])
    waits = "ray_rerank_image_budget_waits_total{}"
    before = scrape("vl").get(waits, 0)

    def ask(images: list[bytes]) -> httpx.Response:
        return post(vl_url, "/v1/rerank", {"query": QUERY, "documents": [{"image": data_uri(i)} for i in images]})

    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(ask, requests))
    for images, reply in zip(requests, replies):
        assert reply.status_code == 200, reply.text
        expected = tiny_vl_reranker.score_pairs([(QUERY, {"image": image}) for image in images])
        got = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
        assert [got[i] for i in range(len(images))] == pytest.approx(expected.tolist(), abs=1e-5)
    deadline = time.monotonic() + 15  # Ray exports metrics every second (the session's setting)
    while scrape("vl").get(waits, 0) <= before:
        assert time.monotonic() < deadline, "no request waited for the image budget"
        time.sleep(1)
