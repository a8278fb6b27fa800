"""Long documents on the endpoint: a per-request `long_documents` (Cohere dialect extension) scores windows exactly
as the library does, and the token limit counts every window."""

import httpx
import pytest

from rerank_core import Reranker
from rerank_core.tiny_model import TINY_MODEL
from tests.rerank_core.test_long_documents import LONG, QUERY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session_model():
    return Reranker.from_pretrained(TINY_MODEL, max_length=512)  # the session app's model settings


def rerank(url, body):
    return httpx.post(url + "/v1/rerank", json=body, timeout=60)


def test_chunked_scores_equal_the_library_and_truncation_stays_the_default(serve_url, session_model):
    documents = [LONG, "cats like fish"]
    chunked = rerank(serve_url, {"query": QUERY, "documents": documents, "long_documents": {"mode": "chunk"}})
    plain = rerank(serve_url, {"query": QUERY, "documents": documents})
    assert chunked.status_code == plain.status_code == 200
    got = {r["index"]: r["relevance_score"] for r in chunked.json()["results"]}
    expected = session_model.score_pairs([(QUERY, d) for d in documents], long_documents="chunk")
    assert [got[0], got[1]] == pytest.approx(expected.tolist(), abs=1e-5)
    got = {r["index"]: r["relevance_score"] for r in plain.json()["results"]}
    assert [got[0], got[1]] == pytest.approx(session_model.score_pairs([(QUERY, d) for d in documents]), abs=1e-5)
    assert chunked.json()["usage"]["total_tokens"] > 2 * plain.json()["usage"]["total_tokens"] - 100
    assert plain.headers["x-truncated-documents"] == "1" and chunked.headers["x-truncated-documents"] == "0"


def test_the_token_limit_counts_every_window(serve_url):
    body = {"query": QUERY, "documents": [LONG, LONG[::-1], LONG.upper()]}
    assert rerank(serve_url, body).status_code == 200
    reply = rerank(serve_url, {**body, "long_documents": {"mode": "chunk"}})
    assert reply.status_code == 400 and "max_tokens_per_request" in reply.json()["message"]


def test_a_bad_long_documents_setting_is_a_400_naming_it(serve_url):
    reply = rerank(serve_url, {"query": QUERY, "documents": [LONG], "long_documents": {"mode": "pages"}})
    assert reply.status_code == 400 and "long_documents.mode" in reply.json()["message"]
