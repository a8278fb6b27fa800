"""NVIDIA NIM (/v1/ranking), Mixedbread (/v1/reranking) and Voyage (/v1/rerank, told from Cohere by its body) on the
real endpoint, driven by their real clients: NVIDIARerank (LangChain, LlamaIndex), Haystack's NvidiaRanker, the
mixedbread and voyageai SDKs."""

import math
import os
import warnings

import httpx
import pytest

from serve.routes import NIM_ROUTE

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack would otherwise post usage to its server

from tests.serve.test_dialects import DOCS, LONG, QUERY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def expected(tiny_reranker):
    return tiny_reranker.score_pairs([(QUERY, d) for d in DOCS])


@pytest.fixture(scope="module")
def served_model(serve_url) -> str:
    return httpx.get(serve_url + "/health", timeout=30).json()["model"]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def best(expected, n: int) -> list[int]:
    return sorted(range(len(expected)), key=lambda i: -expected[i])[:n]


# ---- NVIDIA NIM ----


def test_nim_langchain_nvidia_rerank(serve_url, expected, served_model):
    from langchain_core.documents import Document
    from langchain_nvidia_ai_endpoints import NVIDIARerank

    ranker = NVIDIARerank(base_url=serve_url, model=served_model, top_n=2)  # the client adds /v1
    kept = ranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert [DOCS.index(d.page_content) for d in kept] == best(expected, 2)
    for doc in kept:  # NIM answers the logit; its sigmoid is our relevance
        assert sigmoid(doc.metadata["relevance_score"]) == pytest.approx(float(expected[DOCS.index(doc.page_content)]))


def test_nim_clients_find_the_model_in_the_model_list(serve_url, served_model):
    from langchain_nvidia_ai_endpoints import NVIDIARerank

    listed = httpx.get(serve_url + "/v1/models", timeout=30).json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [served_model]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ranker = NVIDIARerank(base_url=serve_url + "/v1")
    assert ranker.model == served_model and any("Default model is set as" in str(w.message) for w in seen)


def test_nim_llamaindex_nvidia_rerank(serve_url, expected, served_model):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.nvidia_rerank import NVIDIARerank

    ranker = NVIDIARerank(base_url=serve_url + "/v1", model=served_model, top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    kept = ranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [int(n.node.id_) for n in kept] == best(expected, 3)
    for n in kept:
        assert sigmoid(n.score) == pytest.approx(float(expected[int(n.node.id_)]))


def test_nim_haystack_nvidia_ranker(serve_url, expected):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.nvidia import NvidiaRanker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that a URL not ending in /v1 may not list models
        ranker = NvidiaRanker(api_url=serve_url, api_key=Secret.from_token("unused"), top_k=2)
    ranker.warm_up()
    kept = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCS])["documents"]
    assert [DOCS.index(d.content) for d in kept] == best(expected, 2)
    for d in kept:
        assert sigmoid(d.score) == pytest.approx(float(expected[DOCS.index(d.content)]))


def test_nim_truncate_none_refuses_naming_the_passage_and_end_cuts(serve_url):
    body = {"model": "m", "query": {"text": QUERY}, "passages": [{"text": "short"}, {"text": LONG}]}
    refused = httpx.post(serve_url + NIM_ROUTE, json=body, timeout=60)  # NONE is NIM's default
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert problem["detail"].startswith("passages[1]: ") and "over the model's 512" in problem["detail"]
    assert "truncate: END" in problem["detail"]
    cut = httpx.post(serve_url + NIM_ROUTE, json={**body, "truncate": "END"}, timeout=60)
    assert cut.status_code == 200 and cut.headers["x-truncated-documents"] == "1"
    answer = cut.json()
    assert {r["index"] for r in answer["rankings"]} == {0, 1} and answer["usage"]["total_tokens"] > 512
    bad = httpx.post(serve_url + NIM_ROUTE, json={**body, "query": {"text": " "}}, timeout=60)
    assert bad.status_code == 400 and bad.json()["detail"].startswith("query")


# ---- Mixedbread ----


def test_mixedbread_sdk(serve_url, expected, served_model):
    from mixedbread import Mixedbread

    client = Mixedbread(api_key="unused", base_url=serve_url, max_retries=0)
    reply = client.rerank(model="m", query=QUERY, input=DOCS, top_k=2, return_input=True)
    assert [d.index for d in reply.data] == best(expected, 2) and reply.model == served_model
    for d in reply.data:
        assert d.score == pytest.approx(float(expected[d.index]), abs=1e-5) and d.input == DOCS[d.index]
    assert reply.top_k == 2 and reply.return_input and reply.usage.total_tokens > 0


def test_mixedbread_ranks_objects_on_rank_fields(serve_url, tiny_reranker):
    from mixedbread import BadRequestError, Mixedbread

    items = [{"title": "ML", "body": DOCS[0], "year": 2024}, {"title": "Weather", "body": DOCS[1], "year": 2025}]
    client = Mixedbread(api_key="unused", base_url=serve_url, max_retries=0)
    one = client.rerank(query=QUERY, input=items, rank_fields=["body"], return_input=True)
    two = client.rerank(query=QUERY, input=items, rank_fields=["title", "body"])
    every = client.rerank(query=QUERY, input=items)
    texts = {
        "one": [i["body"] for i in items],
        "two": [f"title: {i['title']}\nbody: {i['body']}" for i in items],
        "every": [f"title: {i['title']}\nbody: {i['body']}\nyear: {i['year']}" for i in items],
    }
    for name, reply in (("one", one), ("two", two), ("every", every)):
        want = tiny_reranker.score_pairs([(QUERY, t) for t in texts[name]])
        assert {d.index: d.score for d in reply.data} == pytest.approx(dict(enumerate(want.tolist())), abs=1e-5)
    assert {d.index: d.input for d in one.data} == dict(enumerate(items))  # objects come back as sent
    with pytest.raises(BadRequestError) as refused:
        client.rerank(query=QUERY, input=[items[0], {"title": "no body"}], rank_fields=["body"])
    assert refused.value.body["detail"].startswith("input[1]: ") and "rank_fields ['body']" in str(refused.value.body)


# ---- Voyage (its SDK, pointed at our /v1) ----


def test_voyage_sdk(serve_url, expected, served_model):
    import voyageai

    client = voyageai.Client(api_key="unused", base_url=serve_url + "/v1")
    reply = client.rerank(QUERY, DOCS, model="rerank-2", top_k=3)
    assert [r.index for r in reply.results] == best(expected, 3) and reply.total_tokens > 0
    for r in reply.results:
        assert r.relevance_score == pytest.approx(float(expected[r.index]), abs=1e-5) and r.document == DOCS[r.index]
    with pytest.raises(voyageai.error.InvalidRequestError, match=r"documents\[1\]: .*truncation: true"):
        client.rerank(QUERY, ["short", LONG], model="rerank-2", truncation=False)


def test_voyage_and_cohere_bodies_are_told_apart_on_one_route(serve_url):
    voyage = httpx.post(
        serve_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_k": 2, "return_documents": True}
    ).json()
    assert voyage["object"] == "list" and len(voyage["data"]) == 2 and voyage["data"][0]["document"] in DOCS
    cohere = httpx.post(serve_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2}).json()
    assert len(cohere["results"]) == 2 and "data" not in cohere
    refused = httpx.post(serve_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_k": 0})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("top_k")
