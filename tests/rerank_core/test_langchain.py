"""The LangChain integration inside a real LangChain pipeline: an in-memory vector store's retriever, reranked by
`ContextualCompressionRetriever` with our compressor, and with LangChain's own `CrossEncoderReranker` around our
cross-encoder; locally and against the Serve endpoint."""

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from rerank_core.integrations.langchain import QwenCrossEncoder, QwenReranker
from rerank_core.tiny_model import TINY_MODEL

QUERY = "What is machine learning?"
TEXTS = [
    "Machine learning is a subset of artificial intelligence.",
    "Pizza is a popular food in Italy.",
    "Neural networks learn representations from data.",
    "The weather in Paris is mild in spring.",
    "Gradient descent minimises a loss function.",
    "Coffee is brewed from roasted beans.",
]


@pytest.fixture(scope="module")
def retriever():
    """Every document of an in-memory vector store, in the store's (embedding) order."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    store.add_documents([Document(page_content=t, metadata={"n": i}, id=f"d{i}") for i, t in enumerate(TEXTS)])
    return store.as_retriever(search_kwargs={"k": len(TEXTS)})


def expected_order(reranker, top_n):
    """(text, relevance) of the top_n texts as our Reranker ranks them."""
    scores = reranker.score_pairs([(QUERY, t) for t in TEXTS])
    best = sorted(range(len(TEXTS)), key=lambda i: -scores[i])[:top_n]
    return [(TEXTS[i], float(scores[i])) for i in best]


def reranked_by_compressor(compressor, retriever, reranker, top_n, tolerance):
    """The compression pipeline's documents, checked to be the top_n as `reranker` ranks them, with its scores."""
    got = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=retriever).invoke(QUERY)
    want = expected_order(reranker, top_n)
    assert [d.page_content for d in got] == [text for text, _ in want]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([score for _, score in want], abs=tolerance)
    return got


def test_our_compressor_reranks_a_retrievers_documents_in_a_compression_retriever(retriever, tiny_reranker):
    got = reranked_by_compressor(QwenReranker(model=TINY_MODEL, top_n=3), retriever, tiny_reranker, 3, 1e-6)
    assert all(d.metadata["n"] == TEXTS.index(d.page_content) and d.id == f"d{d.metadata['n']}" for d in got)


def test_langchains_cross_encoder_reranker_runs_on_our_cross_encoder(retriever, tiny_reranker):
    compressor = CrossEncoderReranker(model=QwenCrossEncoder(model=tiny_reranker), top_n=2)
    got = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=retriever).invoke(QUERY)
    assert [d.page_content for d in got] == [text for text, _ in expected_order(tiny_reranker, 2)]


def test_instruction_top_n_none_and_empty_input(tiny_reranker):
    instruction = "Given a question, find passages that answer it"
    reranker = QwenReranker(model=tiny_reranker, top_n=None, instruction=instruction)
    got = reranker.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    scores = tiny_reranker.score_pairs([(QUERY, t) for t in TEXTS], instruction=instruction)
    assert len(got) == len(TEXTS)
    assert {d.page_content: d.metadata["relevance_score"] for d in got} == pytest.approx(
        dict(zip(TEXTS, scores.tolist())), abs=1e-6
    )
    assert reranker.compress_documents([], QUERY) == [] and QwenCrossEncoder(model=tiny_reranker).score([]) == []
    with pytest.raises(ValueError, match="exactly one"):
        QwenReranker()


@pytest.mark.slow
def test_endpoint_mode_against_the_serve_app(serve_url, retriever, tiny_reranker):
    reranked_by_compressor(QwenReranker(endpoint=serve_url, top_n=4), retriever, tiny_reranker, 4, 1e-5)
