"""Several models behind one endpoint, on real Serve apps: each request reaches the model it names (by name or alias,
in every dialect that carries one), the default takes the rest, or strict names answer 404 listing the served models;
each model's deployment has its own replicas and bounds, and one model's lost replica never touches the other's
requests."""

import threading
import time

import httpx
import pytest
from ray import serve
from ray.serve.schema import ReplicaState

from serve.routes import COMPATIBLE_ROUTE, DASHSCOPE_ROUTE, NIM_ROUTE
from tests.serve.apps import TEXT_ALIASES, TEXT_NAME, VL_NAME, replicas
from tests.serve.test_images import PHOTO, data_uri
from tests.serve.test_metrics import scrape

pytestmark = pytest.mark.slow
QUERY, DOCUMENTS = "what is machine learning", ["machine learning is ai", "pizza", "data"]
TIMEOUT_S = 60


def ask(url: str, route: str, model: str | None, documents=DOCUMENTS) -> httpx.Response:
    """A rerank request of QUERY and `documents` in route's dialect, naming `model` (None: no model field)."""
    if route == DASHSCOPE_ROUTE:
        body = {"model": model, "input": {"query": QUERY, "documents": documents}}
    elif route == NIM_ROUTE:
        body = {"model": model, "query": {"text": QUERY}, "passages": [{"text": d} for d in documents]}
    elif route == "/score":
        body = {"model": model, "text_1": QUERY, "text_2": documents}
    else:  # Cohere's /v1/rerank, Infinity's /rerank, DashScope's OpenAI-compatible route
        body = {"model": model, "query": QUERY, "documents": documents}
    if model is None:
        body.pop("model")
    return httpx.post(url + route, json=body, timeout=TIMEOUT_S)


def scores(route: str, answer: dict) -> list[float]:
    """The relevance scores of an answer, in document order."""
    if route == "/score":
        return [item["score"] for item in sorted(answer["data"], key=lambda item: item["index"])]
    results = answer["output"]["results"] if route == DASHSCOPE_ROUTE else answer["results"]
    return [r["relevance_score"] for r in sorted(results, key=lambda r: r["index"])]


def test_each_request_reaches_the_model_it_names_and_the_default_takes_the_rest(
    vl_url, tiny_reranker, tiny_vl_reranker
):
    pairs = [(QUERY, d) for d in DOCUMENTS]
    expected = {TEXT_NAME: tiny_reranker.score_pairs(pairs), VL_NAME: tiny_vl_reranker.score_pairs(pairs)}
    cases = [
        ("/v1/rerank", TEXT_NAME, TEXT_NAME),
        ("/v1/rerank", TEXT_ALIASES[0], TEXT_NAME),
        (DASHSCOPE_ROUTE, TEXT_ALIASES[1], TEXT_NAME),
        (COMPATIBLE_ROUTE, TEXT_NAME, TEXT_NAME),
        ("/score", TEXT_NAME, TEXT_NAME),
        ("/rerank", TEXT_NAME, TEXT_NAME),
        ("/rerank", None, VL_NAME),  # no model: the default, strict names or not
        (DASHSCOPE_ROUTE, "qwen3-vl-rerank", VL_NAME),
    ]
    for route, named, served in cases:
        reply = ask(vl_url, route, named)
        assert reply.status_code == 200, (route, named, reply.text)
        assert reply.json()["model"] == served, (route, named)  # the model that scored it, never the alias asked
        assert scores(route, reply.json()) == pytest.approx(expected[served].tolist(), abs=1e-5), (route, named)
    nim = ask(vl_url, NIM_ROUTE, TEXT_NAME)
    assert nim.status_code == 200 and nim.json()["model"] == TEXT_NAME, nim.text
    image = [{"image": data_uri(PHOTO)}]
    refused = ask(vl_url, DASHSCOPE_ROUTE, TEXT_NAME, documents=image)
    assert refused.status_code == 400 and f"{TEXT_NAME} takes text only" in refused.json()["message"], refused.text
    assert ask(vl_url, DASHSCOPE_ROUTE, VL_NAME, documents=image).status_code == 200

    listed = httpx.get(vl_url + "/v1/models", timeout=TIMEOUT_S).json()["data"]
    assert [(card["id"], card["root"]) for card in listed] == [
        (VL_NAME, VL_NAME),
        ("qwen3-vl-rerank", VL_NAME),
        (TEXT_NAME, TEXT_NAME),
        *((alias, TEXT_NAME) for alias in TEXT_ALIASES),
    ]  # the default first: NIM clients take the first card's id
    health = httpx.get(vl_url + "/health", timeout=TIMEOUT_S).json()
    assert health["model"] == VL_NAME and health["images"] is True
    assert health["models"][TEXT_NAME]["images"] is False and health["models"][VL_NAME]["images"] is True

    wanted = [
        f'ray_rerank_requests_total{{model="{TEXT_NAME}",route="/v1/rerank",status="200"}}',
        f'ray_rerank_pairs_scored_total{{model="{TEXT_NAME}"}}',
        f'ray_rerank_pairs_scored_total{{model="{VL_NAME}"}}',
    ]
    deadline = time.monotonic() + 15  # Ray exports metrics every second (the session's setting)
    while missing := [key for key in wanted if key not in scrape("vl", labels=("model", "route", "status"))]:
        assert time.monotonic() < deadline, f"not counted by model: {missing}"
        time.sleep(1)


def test_strict_names_answer_404_in_each_dialect_naming_the_served_models(vl_url):
    shapes = {
        "/v1/rerank": lambda body: body["message"],
        DASHSCOPE_ROUTE: lambda body: body["code"] == "NotFound" and body["message"],
        COMPATIBLE_ROUTE: lambda body: body["error"]["code"] == "model_not_found" and body["error"]["message"],
        "/rerank": lambda body: body["error"]["message"],
        "/score": lambda body: body["error"]["message"],
        NIM_ROUTE: lambda body: body["status"] == 404 and body["detail"],
    }
    for route, message in shapes.items():
        reply = ask(vl_url, route, "rerank-v3.5")
        assert reply.status_code == 404, (route, reply.text)
        text = message(reply.json())
        served = ("'rerank-v3.5'", VL_NAME, TEXT_NAME, *TEXT_ALIASES)
        assert text and all(name in text for name in served), (route, text)


def test_each_model_keeps_its_own_replicas_and_one_losing_a_replica_never_fails_the_other(vl_url, ray_cluster):
    deployments = serve.status().applications["vl"].deployments
    running = {name: d.replica_states.get(ReplicaState.RUNNING, 0) for name, d in deployments.items()}
    assert running == {"Gateway": 1, f"Reranker-{VL_NAME}": 1, f"Reranker-{TEXT_NAME}": 2}, running  # each its bounds
    (victim,) = replicas(ray_cluster, "vl", f"Reranker-{VL_NAME}")
    text, vl, stop = [], [], threading.Event()

    def client(model: str, outcomes: list):
        while not stop.is_set():
            outcomes.append(ask(vl_url, "/v1/rerank", model).status_code)

    threads = [threading.Thread(target=client, args=args) for args in [(TEXT_NAME, text)] * 2 + [(VL_NAME, vl)]]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        ray_cluster.kill(ray_cluster.get_actor(victim, namespace="serve"), no_restart=True)
        deadline = time.monotonic() + 90
        while not (live := replicas(ray_cluster, "vl", f"Reranker-{VL_NAME}")) or victim in live:
            assert time.monotonic() < deadline, "the lost VL replica was not replaced"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT_S + 5)
    assert text and set(text) == {200}, {s: text.count(s) for s in set(text)}  # untouched by the VL model's loss
    assert set(vl) <= {200, 503}, {s: vl.count(s) for s in set(vl)}
    assert ask(vl_url, "/v1/rerank", VL_NAME).status_code == 200  # healed
