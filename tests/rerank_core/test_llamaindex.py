"""The LlamaIndex integration inside a real LlamaIndex pipeline: a VectorStoreIndex's query engine (in-memory store,
a deterministic embedding, LlamaIndex's MockLLM) with our postprocessor; locally and against the Serve endpoint."""

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from rerank_core.integrations.llamaindex import QwenRerank
from rerank_core.tiny_model import TINY_MODEL
from tests.rerank_core.test_langchain import QUERY, TEXTS


@pytest.fixture(scope="module")
def index():
    documents = [Document(text=t, metadata={"n": i}) for i, t in enumerate(TEXTS)]
    return VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))


def query_through_engine(index, reranker):
    engine = index.as_query_engine(
        llm=MockLLM(),
        embed_model=MockEmbedding(embed_dim=8),
        similarity_top_k=len(TEXTS),
        node_postprocessors=[reranker],
    )
    return engine.query(QUERY).source_nodes


def expected(tiny_reranker, nodes, top_n, instruction=None):
    """(text, relevance) of the top_n nodes as our Reranker ranks what each node embeds (metadata included)."""
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    scores = tiny_reranker.score_pairs([(QUERY, t) for t in texts], instruction=instruction)
    best = sorted(range(len(texts)), key=lambda i: -scores[i])[:top_n]
    return [(nodes[i].node.get_content(), float(scores[i])) for i in best]


def assert_ranked(nodes, want, tolerance):
    """`nodes` are `want`'s texts in its order, with its scores."""
    assert [n.node.get_content() for n in nodes] == [text for text, _ in want]
    assert [n.score for n in nodes] == pytest.approx([score for _, score in want], abs=tolerance)


def test_our_postprocessor_reranks_a_query_engines_nodes(index, tiny_reranker):
    got = query_through_engine(index, QwenRerank(model=TINY_MODEL, top_n=3))
    retrieved = index.as_retriever(similarity_top_k=len(TEXTS)).retrieve(QUERY)
    assert_ranked(got, expected(tiny_reranker, retrieved, 3), 1e-6)  # scored on what each node embeds ("n: i" too)
    assert all(n.node.metadata["n"] == TEXTS.index(n.node.get_content()) for n in got)


def test_instruction_top_n_none_retrieval_score_and_errors(tiny_reranker):
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.5 + i) for i, t in enumerate(TEXTS)]
    instruction = "Given a question, find passages that answer it"
    reranker = QwenRerank(model=tiny_reranker, top_n=None, instruction=instruction, keep_retrieval_score=True)
    want = expected(tiny_reranker, nodes, len(TEXTS), instruction)  # before retrieval_score joins the metadata
    got = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert_ranked(got, want, 1e-6)
    assert all(n.node.metadata["retrieval_score"] == 0.5 + int(n.node.id_) for n in got)
    assert reranker.postprocess_nodes([], query_str=QUERY) == []
    with pytest.raises(ValueError, match="needs the query"):
        reranker.postprocess_nodes(nodes)
    with pytest.raises(ValueError, match="exactly one"):
        QwenRerank()


@pytest.mark.slow
def test_endpoint_mode_against_the_serve_app(serve_url, index, tiny_reranker):
    got = query_through_engine(index, QwenRerank(endpoint=serve_url, top_n=2))
    retrieved = index.as_retriever(similarity_top_k=len(TEXTS)).retrieve(QUERY)
    assert_ranked(got, expected(tiny_reranker, retrieved, 2), 1e-5)
