"""The Haystack integration inside a real Haystack pipeline: an in-memory document store's BM25 retriever feeding our
ranker component; the pipeline saved to YAML and loaded back; locally and against the Serve endpoint."""

import os

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack would otherwise post usage to its server

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

from rerank_core.integrations.haystack import QwenRanker
from rerank_core.tiny_model import TINY_MODEL

QUERY = "What is machine learning?"
TEXTS = [
    "Machine learning is a subset of artificial intelligence.",
    "Pizza is a popular food in Italy, learning from Naples.",
    "Neural networks learn representations from data: machine learning.",
    "The weather in Paris is mild in spring.",
    "Gradient descent is how machine learning minimises a loss.",
]


@pytest.fixture(scope="module")
def store():
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t, meta={"n": i, "topic": f"topic {i}"}) for i, t in enumerate(TEXTS)])
    return store


def pipeline(store, ranker):
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=len(TEXTS)))
    pipe.add_component("ranker", ranker)
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def run(pipe, **ranker_inputs):
    reply = pipe.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY, **ranker_inputs}})
    return reply["ranker"]["documents"]


def expected(tiny_reranker, texts, top_k, read=lambda t: t):
    scores = tiny_reranker.score_pairs([(QUERY, read(t)) for t in texts])
    best = sorted(range(len(texts)), key=lambda i: -scores[i])[:top_k]
    return [(texts[i], float(scores[i])) for i in best]


def assert_ranked(documents, want, tolerance):
    """`documents` are `want`'s texts in its order, with its scores."""
    assert [d.content for d in documents] == [text for text, _ in want]
    assert [d.score for d in documents] == pytest.approx([score for _, score in want], abs=tolerance)


def test_our_ranker_ranks_a_retrievers_documents_in_a_pipeline(store, tiny_reranker):
    got = run(pipeline(store, QwenRanker(model=TINY_MODEL, top_k=3)))
    assert_ranked(got, expected(tiny_reranker, TEXTS, 3), 1e-6)
    assert all(d.meta["n"] == TEXTS.index(d.content) for d in got)
    fewer = run(pipeline(store, QwenRanker(model=TINY_MODEL, top_k=3)), top_k=1)
    assert [d.content for d in fewer] == [got[0].content]


def test_meta_fields_threshold_and_the_pipeline_saved_and_loaded(store, tiny_reranker):
    ranker = QwenRanker(model=TINY_MODEL, top_k=None, meta_fields_to_embed=["topic"], embedding_separator=" | ")
    loaded = Pipeline.loads(
        pipeline(store, ranker).dumps(), allowed_modules=["rerank_core.integrations.haystack"]
    )  # a YAML round trip, as deployments keep pipelines
    got = run(loaded)
    texts = {t: f"topic {i} | {t}" for i, t in enumerate(TEXTS)}
    want = expected(tiny_reranker, TEXTS, len(TEXTS), read=texts.get)
    assert_ranked(got, want, 1e-6)
    threshold = (want[1][1] + want[2][1]) / 2
    assert [d.content for d in run(loaded, score_threshold=threshold)] == [t for t, _ in want[:2]]
    assert QwenRanker(model=TINY_MODEL).run(query=QUERY, documents=[]) == {"documents": []}
    with pytest.raises(ValueError, match="exactly one"):
        QwenRanker()


@pytest.mark.slow
def test_endpoint_mode_against_the_serve_app(serve_url, store, tiny_reranker):
    got = run(pipeline(store, QwenRanker(endpoint=serve_url, top_k=2)))
    assert_ranked(got, expected(tiny_reranker, TEXTS, 2), 1e-5)
