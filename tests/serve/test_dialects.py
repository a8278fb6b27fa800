"""Every rerank dialect on the real endpoint, driven by the clients people already have where one exists:
the scores are the library's, the options are honoured, and errors come in each protocol's own shape."""

import math

import httpx
import numpy as np
import pytest

from serve.routes import COMPATIBLE_ROUTE, DASHSCOPE_ROUTE, MIXEDBREAD_ROUTE, MODELS_ROUTE, NIM_ROUTE, RANK_ROUTES

pytestmark = pytest.mark.slow
QUERY = "What is machine learning?"
DOCS = ["Machine learning is a subset of AI.", "The weather is sunny today.", "ML learns from data.", "Pizza."]
LONG = "data " * 700  # over the session app's max_length of 512 tokens


@pytest.fixture(scope="module")
def expected(tiny_reranker):
    return tiny_reranker.score_pairs([(QUERY, d) for d in DOCS])


def post(url, path, body):
    return httpx.post(url + path, json=body, timeout=60)


def _best_first(indices, expected):
    return list(indices) == [int(i) for i in np.argsort(-expected, kind="stable")[: len(indices)]]


# ---- Cohere SDK (v1 and v2), LangChain ----


def test_cohere_v1_client(serve_url, expected):
    import cohere

    client = cohere.Client(api_key="unused", base_url=serve_url)
    reply = client.rerank(model="qwen3-reranker", query=QUERY, documents=DOCS, top_n=2, return_documents=True)
    assert len(reply.results) == 2 and _best_first([r.index for r in reply.results], expected)
    for r in reply.results:
        assert r.relevance_score == pytest.approx(float(expected[r.index]), abs=1e-5)
        assert r.document.text == DOCS[r.index]


def test_cohere_v2_client(serve_url, expected):
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=serve_url)
    reply = client.rerank(model="qwen3-reranker", query=QUERY, documents=DOCS, top_n=3)
    assert len(reply.results) == 3 and _best_first([r.index for r in reply.results], expected)
    assert [r.relevance_score for r in reply.results] == pytest.approx(
        [float(expected[r.index]) for r in reply.results], abs=1e-5
    )


def test_langchain_cohere_rerank(serve_url, expected):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    compressor = CohereRerank(cohere_api_key="unused", base_url=serve_url, model="qwen3-reranker", top_n=2)
    kept = compressor.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert len(kept) == 2
    for doc in kept:
        i = DOCS.index(doc.page_content)
        assert doc.metadata["relevance_score"] == pytest.approx(float(expected[i]), abs=1e-5)


def test_langchain_dashscope_rerank(serve_url, expected):
    import dashscope
    from langchain_community.document_compressors.dashscope_rerank import DashScopeRerank
    from langchain_core.documents import Document

    saved = dashscope.base_http_api_url
    dashscope.base_http_api_url = f"{serve_url}/api/v1"  # what DASHSCOPE_HTTP_BASE_URL sets
    try:
        compressor = DashScopeRerank(dashscope_api_key="unused", model="gte-rerank-v2", top_n=3)
        kept = compressor.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    finally:
        dashscope.base_http_api_url = saved
    assert len(kept) == 3
    for doc in kept:
        i = DOCS.index(doc.page_content)
        assert doc.metadata["relevance_score"] == pytest.approx(float(expected[i]), abs=1e-5)


# ---- Infinity (its client) and TEI (plain HTTP) on POST /rerank ----


def test_infinity_client(serve_url, expected):
    from infinity_client import Client
    from infinity_client.api.default import rerank
    from infinity_client.models import RerankInput

    client = Client(base_url=serve_url, timeout=httpx.Timeout(60))
    body = RerankInput(query=QUERY, documents=DOCS, return_documents=True, top_n=3)
    reply = rerank.sync(client=client, body=body)
    assert len(reply.results) == 3 and _best_first([r.index for r in reply.results], expected)
    for r in reply.results:
        assert r.relevance_score == pytest.approx(float(expected[r.index]), abs=1e-5) and r.document == DOCS[r.index]
    assert reply.usage.total_tokens > 0
    raw = rerank.sync(client=client, body=RerankInput(query=QUERY, documents=DOCS, raw_scores=True))
    for r in raw.results:  # the logit l_yes − l_no, whose sigmoid is the relevance
        assert 1 / (1 + math.exp(-r.relevance_score)) == pytest.approx(float(expected[r.index]), abs=1e-5)


def test_tei_rerank(serve_url, expected):
    reply = post(serve_url, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
    assert reply.status_code == 200
    ranks = reply.json()
    assert isinstance(ranks, list) and _best_first([r["index"] for r in ranks], expected)
    for r in ranks:
        assert r["score"] == pytest.approx(float(expected[r["index"]]), abs=1e-5) and r["text"] == DOCS[r["index"]]
    raw = post(serve_url, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    for r in raw:
        assert "text" not in r
        assert 1 / (1 + math.exp(-r["score"])) == pytest.approx(float(expected[r["index"]]), abs=1e-5)


def test_tei_truncation_is_refused_unless_asked_for_and_then_honours_its_direction(serve_url, tiny_reranker):
    texts = [LONG + "the end", "short"]
    refused = post(serve_url, "/rerank", {"query": QUERY, "texts": texts})
    assert refused.status_code == 413 and refused.json()["error_type"] == "validation"
    assert "truncate" in refused.json()["error"]
    right = post(serve_url, "/rerank", {"query": QUERY, "texts": texts, "truncate": True})
    left = post(
        serve_url, "/rerank", {"query": QUERY, "texts": texts, "truncate": True, "truncation_direction": "Left"}
    )
    assert right.status_code == left.status_code == 200
    assert int(right.headers["x-truncated-documents"]) == 1
    scorer = tiny_reranker.scorer
    limited = type(scorer).open(scorer.graph_path.parent, max_length=512)
    for reply, side in ((right, "right"), (left, "left")):
        want = limited.score_prepared([limited.prepare([(QUERY, t) for t in texts], truncation=side)])[0].scores
        assert {r["index"]: r["score"] for r in reply.json()} == pytest.approx(dict(enumerate(want.tolist())), abs=1e-5)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"query": QUERY}, "texts"),
        ({"query": "", "texts": DOCS}, "query"),
        ({"query": QUERY, "texts": ["a", 1]}, "texts[1]"),
    ],
)
def test_tei_errors_have_its_shape(serve_url, body, field):
    reply = post(serve_url, "/rerank", body)
    assert reply.status_code == 422
    err = reply.json()
    assert set(err) == {"error", "error_type"} and err["error_type"] == "validation" and err["error"].startswith(field)


def test_infinity_errors_have_the_openai_shape(serve_url):
    reply = post(serve_url, "/rerank", {"query": QUERY, "documents": DOCS, "top_n": 0})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "top_n" and error["code"] == 400 and error["type"] == "BadRequestError"


# ---- vLLM's score API (plain HTTP) ----


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_vllm_score_one_to_many_and_pairwise(serve_url, tiny_reranker, path):
    one = post(serve_url, path, {"model": "m", "text_1": QUERY, "text_2": DOCS}).json()
    expected = tiny_reranker.score_pairs([(QUERY, d) for d in DOCS])
    assert one["object"] == "list" and one["created"] > 0 and one["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in one["data"]] == [0, 1, 2, 3] and all(d["object"] == "score" for d in one["data"])
    assert [d["score"] for d in one["data"]] == pytest.approx(expected.tolist(), abs=1e-5)

    queries = [QUERY, "How to make coffee?", "Où est Paris ?", QUERY]
    pairwise = post(serve_url, path, {"text_1": queries, "text_2": DOCS}).json()
    assert [d["score"] for d in pairwise["data"]] == pytest.approx(
        tiny_reranker.score_pairs(list(zip(queries, DOCS))).tolist(), abs=1e-5
    )
    single = post(serve_url, path, {"text_1": [QUERY], "text_2": DOCS[0]}).json()
    assert single["data"][0]["score"] == pytest.approx(float(expected[0]), abs=1e-5)


def test_vllm_score_errors_have_its_shape(serve_url):
    reply = post(serve_url, "/score", {"text_1": [QUERY, QUERY], "text_2": DOCS})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "text_1" and "1:1, 1:N or N:N" in error["message"] and error["code"] == 400
    assert post(serve_url, "/score", {"text_1": QUERY}).json()["error"]["param"] == "text_2"


# ---- DashScope's OpenAI-compatible rerank (plain HTTP) ----


def test_dashscope_compatible_rerank(serve_url, tiny_reranker):
    body = {
        "model": "qwen3-rerank",
        "query": QUERY,
        "documents": DOCS,
        "top_n": 2,
        "return_documents": True,
        "instruct": "Retrieve semantically similar text.",
    }
    reply = post(serve_url, COMPATIBLE_ROUTE, body).json()
    expected = tiny_reranker.score_pairs([(QUERY, d) for d in DOCS], instruction=body["instruct"])
    assert reply["object"] == "list" and reply["id"] and reply["usage"]["total_tokens"] > 0
    assert len(reply["results"]) == 2 and _best_first([r["index"] for r in reply["results"]], expected)
    for r in reply["results"]:
        assert r["relevance_score"] == pytest.approx(float(expected[r["index"]]), abs=1e-5)
        assert r["document"]["text"] == DOCS[r["index"]]


def test_dashscope_compatible_errors_have_its_shape(serve_url):
    reply = post(serve_url, COMPATIBLE_ROUTE, {"query": QUERY, "documents": DOCS})
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"]["param"] == "model" and body["error"]["code"] == "invalid_parameter_error"
    assert body["request_id"]


# ---- the limits hold on every route, each answering in its own shape ----

ROUTE_BODIES = {
    "/v1/rerank": lambda docs: {"query": QUERY, "documents": docs},
    DASHSCOPE_ROUTE: lambda docs: {"model": "m", "input": {"query": QUERY, "documents": docs}},
    COMPATIBLE_ROUTE: lambda docs: {"model": "m", "query": QUERY, "documents": docs},
    "/rerank": lambda docs: {"query": QUERY, "texts": docs},
    "/score": lambda docs: {"text_1": QUERY, "text_2": docs},
    NIM_ROUTE: lambda docs: {"query": {"text": QUERY}, "passages": [{"text": d} for d in docs], "truncate": "END"},
    MIXEDBREAD_ROUTE: lambda docs: {"query": QUERY, "input": docs},
}
MESSAGE = {
    "/v1/rerank": lambda b: b["message"],
    DASHSCOPE_ROUTE: lambda b: b["message"],
    COMPATIBLE_ROUTE: lambda b: b["error"]["message"],
    "/rerank": lambda b: b["error"],
    "/score": lambda b: b["error"]["message"],
    NIM_ROUTE: lambda b: b["detail"],
    MIXEDBREAD_ROUTE: lambda b: b["detail"],
}


@pytest.mark.parametrize("route", list(ROUTE_BODIES))
def test_every_route_enforces_documents_tokens_and_body_limits(serve_url, route):
    too_many = post(serve_url, route, ROUTE_BODIES[route](["d"] * 65))
    assert too_many.status_code in (400, 422) and "max_documents=64" in MESSAGE[route](too_many.json())
    heavy = post(serve_url, route, ROUTE_BODIES[route](["data " * 300] * 20))  # ~6,000 tokens over 4,096
    assert heavy.status_code in (400, 422)
    assert "max_tokens_per_request=4096" in MESSAGE[route](heavy.json()) and "tokens" in MESSAGE[route](heavy.json())
    huge = post(serve_url, route, ROUTE_BODIES[route](["x" * 70000]))
    assert huge.status_code == 413 and "max_body_bytes=65536" in MESSAGE[route](huge.json())


def test_docs_list_every_route(serve_url):
    paths = httpx.get(serve_url + "/openapi.json", timeout=10).json()["paths"]
    assert set(RANK_ROUTES) | {MODELS_ROUTE} <= set(paths)
    schema = paths["/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {s["title"] for s in schema["oneOf"]} == {"TeiRerankRequest", "InfinityRerankRequest", "VllmRerankRequest"}
    schema = paths["/v1/rerank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {s["title"] for s in schema["oneOf"]} == {"RerankRequest", "VoyageRerankRequest", "VllmRerankRequest"}
