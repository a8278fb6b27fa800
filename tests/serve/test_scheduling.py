"""The scheduler on real Serve over loopback: a client that goes away leaves its pairs unscored, deadlines answer 504
in each dialect's shape, repeated pairs come from the score cache."""

import time

import httpx
import pytest
from ray import serve

from serve.app import BATCH_HEADER, CACHED_HEADER, TIMEOUT_HEADER
from tests.serve.test_app import _deploy_extra
from tests.serve.test_metrics import delta, scrape

pytestmark = pytest.mark.slow
APP = "slowcalls"


@pytest.fixture(scope="module")
def slow_url(serve_url):
    """A replica whose calls hold one pair each (tiny token budget): a bulk request takes hundreds of calls."""
    model = {"model": "builtin:tiny-qwen3-reranker", "token_budget": 16, "intra_op_threads": 1, "max_length": 512}
    args = {"model": model, "max_documents": 2000, "max_body_bytes": 1 << 20, "max_tokens_per_request": 10**6}
    user_config = {"max_batch_size": 8, "batch_wait_timeout_s": 0.0, "call_target_s": 0.0}
    _deploy_extra(APP, args, {"user_config": user_config})
    from serve.launcher import wait_healthy

    url = f"{serve_url}/{APP}"
    wait_healthy(url, timeout_s=120)
    yield url
    serve.delete(APP)


def bulk(n: int, tag: str) -> dict:
    return {"query": f"what is {tag}?", "documents": [f"{tag} document {i} " + "words " * 20 for i in range(n)]}


def test_a_client_that_disconnects_leaves_its_pairs_unscored_and_others_are_served(slow_url):
    before = scrape(APP)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow_url + "/v1/rerank", json=bulk(1500, "abandoned"), timeout=1.0)
    started = time.monotonic()
    small = httpx.post(slow_url + "/v1/rerank", json=bulk(3, "small"), timeout=60)
    assert small.status_code == 200 and len(small.json()["results"]) == 3
    assert time.monotonic() - started < 5  # not behind the 1,500 abandoned pairs
    key = 'ray_rerank_pairs_dropped_total{reason="cancelled"}'
    deadline = time.monotonic() + 90
    while (dropped := delta(scrape(APP), before, key)) == 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert 0 < dropped <= 1500


@pytest.mark.parametrize(
    "path,body,shape",
    [
        ("/v1/rerank", bulk(600, "deadline-cohere"), lambda b: b["field"] == TIMEOUT_HEADER),
        ("/rerank", {"query": "q", "texts": bulk(600, "deadline-tei")["documents"]}, lambda b: "error_type" in b),
        (
            "/score",
            {"text_1": "q", "text_2": bulk(600, "deadline-vllm")["documents"]},
            lambda b: b["error"]["code"] == 504,
        ),
    ],
)
def test_a_request_past_its_deadline_gets_504_in_its_dialect(slow_url, path, body, shape):
    started = time.monotonic()
    reply = httpx.post(slow_url + path, json=body, headers={TIMEOUT_HEADER: "0.3"}, timeout=60)
    assert reply.status_code == 504 and shape(reply.json())
    assert "0.3 s" in reply.text and time.monotonic() - started < 10


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf", "nan"])
def test_a_bad_timeout_header_is_refused_naming_it(slow_url, value):
    reply = httpx.post(slow_url + "/v1/rerank", json=bulk(2, "x"), headers={TIMEOUT_HEADER: value}, timeout=60)
    assert reply.status_code == 400 and TIMEOUT_HEADER in reply.json()["message"]


def test_a_repeated_request_is_answered_from_the_cache_with_identical_scores(slow_url):
    body = bulk(40, "repeated")
    first = httpx.post(slow_url + "/v1/rerank", json=body, timeout=60)
    again = httpx.post(slow_url + "/v1/rerank", json=body, timeout=60)
    assert first.headers[CACHED_HEADER] == "0" and again.headers[CACHED_HEADER] == "40"
    assert again.json()["results"] == first.json()["results"]
    assert again.headers[BATCH_HEADER] == "1"
