"""The options every dialect takes beside its own: a per-request instruction (`instruction` or `instruct`), a score
threshold, max_tokens_per_doc, objects ranked on rank_fields; and every answer with room for it names the model and
the tokens used."""

import httpx
import numpy as np
import pytest

from serve.routes import COMPATIBLE_ROUTE, DASHSCOPE_ROUTE, MIXEDBREAD_ROUTE, NIM_ROUTE

pytestmark = pytest.mark.slow
QUERY = "What is machine learning?"
DOCS = ["Machine learning is a subset of AI.", "The weather is sunny today.", "ML learns from data.", "Pizza."]
INSTRUCTION = "Retrieve semantically similar text."


def post(url, path, body):
    reply = httpx.post(url + path, json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


# Each dialect's body for QUERY × DOCS with `options` where it takes them, and its (index, value) pairs back.
BODIES = {
    "cohere": ("/v1/rerank", lambda o: {"query": QUERY, "documents": DOCS, **o}),
    "voyage": ("/v1/rerank", lambda o: {"query": QUERY, "documents": DOCS, "truncation": True, **o}),
    "dashscope": (
        DASHSCOPE_ROUTE,
        lambda o: {"model": "m", "input": {"query": QUERY, "documents": DOCS}, "parameters": o},
    ),
    "compatible": (COMPATIBLE_ROUTE, lambda o: {"model": "m", "query": QUERY, "documents": DOCS, **o}),
    "tei": ("/rerank", lambda o: {"query": QUERY, "texts": DOCS, **o}),
    "infinity": ("/rerank", lambda o: {"query": QUERY, "documents": DOCS, **o}),
    "vllm": ("/score", lambda o: {"text_1": QUERY, "text_2": DOCS, **o}),
    "nim": (NIM_ROUTE, lambda o: {"query": {"text": QUERY}, "passages": [{"text": d} for d in DOCS], **o}),
    "mixedbread": (MIXEDBREAD_ROUTE, lambda o: {"query": QUERY, "input": DOCS, **o}),
}


def values(dialect: str, answer) -> dict[int, float]:
    """Index → the value the answer carries (relevance, or the logit for NIM)."""
    items = {
        "cohere": lambda a: a["results"],
        "voyage": lambda a: a["data"],
        "dashscope": lambda a: a["output"]["results"],
        "compatible": lambda a: a["results"],
        "tei": lambda a: a,
        "infinity": lambda a: a["results"],
        "vllm": lambda a: a["data"],
        "nim": lambda a: a["rankings"],
        "mixedbread": lambda a: a["data"],
    }[dialect](answer)
    key = next(k for k in ("relevance_score", "score", "logit") if k in items[0]) if items else None
    return {item["index"]: item[key] for item in items}


def ask(serve_url, dialect: str, options: dict) -> dict[int, float]:
    route, body = BODIES[dialect]
    return values(dialect, post(serve_url, route, body(options)))


def logit(scores: np.ndarray) -> np.ndarray:
    return np.log(scores / (1 - scores))


@pytest.mark.parametrize("dialect", list(BODIES))
@pytest.mark.parametrize("name", ["instruction", "instruct"])
def test_a_per_request_instruction_by_either_name(serve_url, tiny_reranker, dialect, name):
    want = tiny_reranker.score_pairs([(QUERY, d) for d in DOCS], instruction=INSTRUCTION)
    want = logit(want) if dialect == "nim" else want
    got = ask(serve_url, dialect, {name: INSTRUCTION})
    assert got == pytest.approx(dict(enumerate(want.tolist())), abs=2e-5)
    assert got != pytest.approx(ask(serve_url, dialect, {}), abs=1e-4)  # the instruction changed the scores


@pytest.mark.parametrize("dialect", list(BODIES))
def test_score_threshold_drops_what_scores_below_it(serve_url, tiny_reranker, dialect):
    scores = tiny_reranker.score_pairs([(QUERY, d) for d in DOCS])
    shown = logit(scores) if dialect == "nim" else scores
    threshold = float(np.sort(shown)[1] + np.sort(shown)[2]) / 2  # keeps the two best
    got = ask(serve_url, dialect, {"score_threshold": threshold})
    assert sorted(got) == sorted(int(i) for i in np.flatnonzero(shown >= threshold)) and len(got) == 2


def test_score_threshold_applies_after_top_n_and_to_raw_scores(serve_url, tiny_reranker):
    scores = tiny_reranker.score_pairs([(QUERY, d) for d in DOCS])
    below_all = float(scores.min()) - 1e-3
    top = post(serve_url, "/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 1, "score_threshold": below_all})
    assert [r["index"] for r in top["results"]] == [int(np.argmax(scores))]
    above_all = float(scores.max()) + 1e-3
    assert (
        post(serve_url, "/v1/rerank", {"query": QUERY, "documents": DOCS, "score_threshold": above_all})["results"]
        == []
    )
    raw = post(serve_url, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True, "score_threshold": 0.0})
    assert sorted(r["index"] for r in raw) == sorted(int(i) for i in np.flatnonzero(scores >= 0.5))


@pytest.mark.parametrize("dialect", ["cohere", "compatible", "tei", "nim", "mixedbread"])
def test_max_tokens_per_doc_scores_each_document_cut_to_that_many_tokens(serve_url, tiny_reranker, dialect):
    scorer = tiny_reranker.scorer
    prepared = scorer.prepare([(QUERY, d) for d in DOCS], max_tokens_per_doc=6)
    want = scorer.score_prepared([prepared])[0]
    want = want.logits if dialect == "nim" else want.scores
    assert ask(serve_url, dialect, {"max_tokens_per_doc": 6}) == pytest.approx(dict(enumerate(want.tolist())), abs=2e-5)
    lengths = [min(len(scorer.tokenizer.encode_text(d)), 6) for d in DOCS]
    assert [len(scorer.tokenizer.encode_text(d)) for _, d in prepared.pairs] == lengths and lengths[0] == 6


def test_max_tokens_per_doc_must_be_positive(serve_url):
    reply = httpx.post(serve_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS, "max_tokens_per_doc": 0})
    assert reply.status_code == 400 and reply.json()["field"] == "max_tokens_per_doc"


def test_cohere_ranks_objects_on_rank_fields_and_returns_them(serve_url, tiny_reranker):
    items = [{"text": DOCS[0], "title": "ML"}, {"text": DOCS[1], "title": "Weather"}]
    plain = post(serve_url, "/v1/rerank", {"query": QUERY, "documents": items, "return_documents": True})
    want = tiny_reranker.score_pairs([(QUERY, i["text"]) for i in items])
    assert {r["index"]: r["relevance_score"] for r in plain["results"]} == pytest.approx(dict(enumerate(want.tolist())))
    assert {r["index"]: r["document"] for r in plain["results"]} == dict(enumerate(items))
    titled = post(serve_url, "/v1/rerank", {"query": QUERY, "documents": items, "rank_fields": ["title", "text"]})
    want = tiny_reranker.score_pairs([(QUERY, f"title: {i['title']}\ntext: {i['text']}") for i in items])
    assert {r["index"]: r["relevance_score"] for r in titled["results"]} == pytest.approx(
        dict(enumerate(want.tolist()))
    )


@pytest.mark.parametrize("dialect", [d for d in BODIES if d != "tei"])  # TEI answers a bare list
def test_every_answer_names_the_model_and_the_tokens_used(serve_url, dialect):
    route, body = BODIES[dialect]
    answer = post(serve_url, route, body({}))
    model = httpx.get(serve_url + "/health", timeout=30).json()["model"]
    assert answer["model"] == model and answer["usage"]["total_tokens"] > 0
