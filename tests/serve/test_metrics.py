"""The replicas' operator metrics appear on Ray's Prometheus endpoint with the right counts."""

import time
import urllib.request

import httpx
import pytest

from tests.conftest import METRICS_PORT

pytestmark = pytest.mark.slow


def scrape(app: str = "rerank", labels=("route", "status", "le", "reason", "size")) -> dict[str, float]:
    """Every sample of an app's rerank_* metrics: 'name{labels}' → value (only `labels` kept), summed over the rest
    (replicas, models)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("ray_rerank_") or f'application="{app}"' not in line:
            continue
        head, value = line.rsplit(" ", 1)
        name, tags = head.split("{", 1)
        keep = sorted(p for p in tags.rstrip("}").split(",") if p.split("=")[0] in labels)
        key = f"{name}{{{','.join(keep)}}}"
        samples[key] = samples.get(key, 0.0) + float(value)
    return samples


def delta(after: dict, before: dict, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_requests_pairs_tokens_truncations_calls_and_cache_are_counted(serve_url):
    time.sleep(3)  # let everything earlier tests did reach the exporter first (it reports every second)
    before = scrape()
    tokens = 0
    documents = [f"{word} {time.time()}" for word in "abcd"]  # never scored before: the first request misses
    for _ in range(3):  # the second and third are answered from the score cache
        reply = httpx.post(serve_url + "/v1/rerank", json={"query": "q", "documents": documents}, timeout=60)
        tokens += reply.json()["usage"]["total_tokens"]
    text_2 = [f"{time.time()} " + "data " * 700, f"short {time.time()}"]  # tagged at the start: its end is cut
    reply = httpx.post(serve_url + "/score", json={"text_1": "q", "text_2": text_2}, timeout=60)
    tokens += reply.json()["usage"]["total_tokens"]
    assert httpx.post(serve_url + "/rerank", json={"query": "q"}, timeout=60).status_code == 422
    expected = {
        'ray_rerank_requests_total{route="/v1/rerank",status="200"}': 3,
        'ray_rerank_requests_total{route="/score",status="200"}': 1,
        'ray_rerank_requests_total{route="/rerank",status="422"}': 1,
        "ray_rerank_pairs_scored_total{}": 14,
        "ray_rerank_tokens_scored_total{}": tokens,
        "ray_rerank_pairs_truncated_total{}": 1,
        "ray_rerank_score_cache_hits_total{}": 8,
        "ray_rerank_score_cache_misses_total{}": 6,
        'ray_rerank_request_seconds_count{size="1-8"}': 4,
        "ray_rerank_queue_wait_seconds_count{}": 2,  # the two requests that needed the model
    }
    deadline = time.monotonic() + 90
    while True:
        after = scrape()
        got = {key: delta(after, before, key) for key in expected}
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert got == expected
    calls = delta(after, before, "ray_rerank_model_call_seconds_count{}")
    assert calls in (2, 3)  # the long pair may take a call of its own
    assert delta(after, before, 'ray_rerank_requests_per_model_call_bucket{le="1.0"}') == calls
    assert delta(after, before, "ray_rerank_model_call_seconds_sum{}") > 0
