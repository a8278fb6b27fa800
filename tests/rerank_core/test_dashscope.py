"""The DashScope backend against a real HTTP server on 127.0.0.1 that speaks TextReRank's protocol."""

import base64
import io
import logging

import numpy as np
import pytest

from rerank_core import InvalidInputError, Reranker, UpstreamError
from rerank_core.api import load_reranker
from rerank_core.config import ModelConfig
from tests.fake_dashscope import API_KEY, overlap_score

QUERY = "what is machine learning"
DOCS = ["machine learning is a subset of ai", "the weather is sunny", "what is learning", "pizza"]


def reranker(fake, **kw):
    kw.setdefault("max_retries", 3)
    return Reranker.from_dashscope("gte-rerank-v2", api_key=API_KEY, base_url=fake.base_url, **kw)


def test_scores_and_order_follow_the_service(fake_dashscope):
    (result,) = reranker(fake_dashscope).rerank(QUERY, DOCS, top_k=3)
    expected = [overlap_score(QUERY, d) for d in DOCS]
    assert [d.index for d in result.documents] == list(np.argsort(-np.array(expected), kind="stable")[:3])
    assert all(abs(d.relevance_score - expected[d.index]) < 1e-6 for d in result.documents)
    (sent,) = fake_dashscope.requests
    body = sent["body"]
    assert body["model"] == "gte-rerank-v2" and body["input"] == {"query": QUERY, "documents": DOCS}
    assert body["parameters"]["top_n"] == len(DOCS) and body["parameters"]["return_documents"] is False


def test_instruction_is_sent_as_instruct(fake_dashscope):
    reranker(fake_dashscope, instruction="Find facts").score_pairs([(QUERY, "x")])
    assert fake_dashscope.requests[0]["body"]["parameters"]["instruct"] == "Find facts"


def test_1200_documents_are_split_sent_and_merged_in_input_order(fake_dashscope):
    docs = [f"doc {i} " + ("machine learning " if i % 3 == 0 else "weather ") * (i % 7) for i in range(1200)]
    scores = reranker(fake_dashscope).compute_scores(QUERY, docs)[0]
    assert scores == pytest.approx([overlap_score(QUERY, d) for d in docs], abs=1e-6)
    sizes = [len(r["body"]["input"]["documents"]) for r in fake_dashscope.requests]
    assert sum(sizes) == 1200 and max(sizes) <= 500 and len(sizes) == 3


def test_token_cap_splits_long_documents(fake_dashscope):
    docs = ["machine " * 5000] * 20  # ~4000 tokens each after the service's truncation: ≤ 7 per request
    reranker(fake_dashscope).score_pairs([(QUERY, d) for d in docs])
    assert len(fake_dashscope.requests) >= 3
    assert all(len(r["body"]["input"]["documents"]) <= 7 for r in fake_dashscope.requests)


def test_several_queries_each_get_their_requests(fake_dashscope):
    pairs = [("coffee beans", "beans"), (QUERY, "learning"), ("coffee beans", "tea")]
    scores = reranker(fake_dashscope).score_pairs(pairs)
    assert scores.tolist() == pytest.approx([overlap_score(q, d) for q, d in pairs])
    assert len(fake_dashscope.requests) == 2


@pytest.mark.parametrize("status,code", [(429, "Throttling"), (500, "InternalError"), (503, "ServiceUnavailable")])
def test_transient_errors_are_retried(fake_dashscope, status, code):
    fake_dashscope.fail(status, code, times=2, retry_after=0.01)
    scores = reranker(fake_dashscope).score_pairs([(QUERY, d) for d in DOCS])
    assert scores.tolist() == pytest.approx([overlap_score(QUERY, d) for d in DOCS])
    assert len(fake_dashscope.requests) == 3


def test_persistent_503_raises_typed_error_after_the_retries(fake_dashscope):
    fake_dashscope.fail(503, "ServiceUnavailable", times=10, retry_after=0.01)
    with pytest.raises(UpstreamError) as info:
        reranker(fake_dashscope, max_retries=2).score_pairs([(QUERY, "x")])
    err = info.value
    assert (err.status, err.code) == (503, "ServiceUnavailable") and err.request_id and "fake" in err.message
    assert len(fake_dashscope.requests) == 3


def test_401_is_not_retried(fake_dashscope):
    bad = Reranker.from_dashscope(api_key="sk-wrong-key-123", base_url=fake_dashscope.base_url, max_retries=5)
    with pytest.raises(UpstreamError) as info:
        bad.score_pairs([(QUERY, "x")])
    assert info.value.status == 401 and info.value.code == "InvalidApiKey"
    assert len(fake_dashscope.requests) == 1
    assert "sk-wrong-key-123" not in str(info.value) and "sk-wrong-key-123" not in repr(bad.scorer)


def test_timeout_is_retried_then_raised(fake_dashscope):
    fake_dashscope.delay_s = 1.0
    with pytest.raises(UpstreamError) as info:
        reranker(fake_dashscope, timeout_s=0.2, max_retries=1).score_pairs([(QUERY, "x")])
    assert info.value.status is None and "Timeout" in info.value.code
    assert len(fake_dashscope.requests) == 2


def test_unreachable_service_raises_typed_error(fake_dashscope):
    r = Reranker.from_dashscope(api_key=API_KEY, base_url="http://127.0.0.1:9/api/v1", max_retries=1)
    with pytest.raises(UpstreamError) as info:
        r.score_pairs([(QUERY, "x")])
    assert info.value.status is None


def test_missing_key_is_a_value_error(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="DASHSCOPE_API_KEY"):
        Reranker.from_dashscope()


def test_key_and_base_url_from_the_environment(fake_dashscope, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", API_KEY)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake_dashscope.base_url)
    assert Reranker.from_dashscope().score_pairs([(QUERY, "learning")])[0] > 0


def test_empty_query_is_a_value_error(fake_dashscope):
    with pytest.raises(ValueError):
        reranker(fake_dashscope).rerank("", DOCS)
    assert isinstance(InvalidInputError("query", "x"), ValueError)
    assert not fake_dashscope.requests


def test_the_key_is_in_no_log_line_or_message(fake_dashscope, caplog):
    fake_dashscope.fail(503, "ServiceUnavailable", times=5, retry_after=0.01)
    r = reranker(fake_dashscope, max_retries=1)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(UpstreamError) as info:
            r.score_pairs([(QUERY, "x")])
        r2 = Reranker.from_dashscope(api_key=API_KEY, base_url="http://127.0.0.1:9/api/v1", max_retries=0)
        with pytest.raises(UpstreamError) as info2:
            r2.score_pairs([(QUERY, "x")])
    texts = [caplog.text, str(info.value), repr(info.value), str(info2.value), repr(r.scorer), repr(r2.scorer)]
    assert not any(API_KEY in t for t in texts)


def test_backend_dashscope_in_config(fake_dashscope, monkeypatch):
    monkeypatch.setenv("MY_DS_KEY", API_KEY)
    cfg = ModelConfig(
        backend="dashscope", model="qwen3-rerank", api_key_env="MY_DS_KEY", base_url=fake_dashscope.base_url
    )
    r = load_reranker(cfg)
    assert r.score_pairs([(QUERY, "learning")])[0] == pytest.approx(overlap_score(QUERY, "learning"))
    assert fake_dashscope.requests[0]["body"]["model"] == "qwen3-rerank"


def test_qwen3_vl_rerank_is_sent_images_as_dashscope_takes_them(fake_dashscope, tmp_path):
    from PIL import Image as PILImage

    picture = PILImage.new("RGB", (8, 6), (200, 10, 10))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    (tmp_path / "p.png").write_bytes(buffer.getvalue())
    url = "https://example.com/cat.jpg"
    documents = ["machine learning", {"image": url}, {"image": buffer.getvalue()}, {"image": str(tmp_path / "p.png")}]
    documents.append({"image": picture})
    vl = Reranker.from_dashscope("qwen3-vl-rerank", api_key=API_KEY, base_url=fake_dashscope.base_url)
    scores = vl.compute_scores({"image": str(tmp_path / "p.png")}, documents)[0]
    (sent,) = fake_dashscope.requests
    body = sent["body"]["input"]
    data_uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert body["query"] == {"image": data_uri}
    want = [{"text": "machine learning"}, {"image": url}, {"image": data_uri}, {"image": data_uri}]
    assert body["documents"][:4] == want
    assert body["documents"][4]["image"].startswith("data:image/png;base64,")
    assert scores == pytest.approx([overlap_score(body["query"], d) for d in body["documents"]])
    assert scores[2] == scores[3] == 1.0  # the same picture as bytes and as a file


def test_qwen3_vl_rerank_requests_stay_within_its_documented_caps(fake_dashscope):
    vl = Reranker.from_dashscope("qwen3-vl-rerank", api_key=API_KEY, base_url=fake_dashscope.base_url)
    documents = [{"image": f"https://example.com/{k}.png"} for k in range(90)] + [f"text {k}" for k in range(150)]
    scores = vl.compute_scores("a query", documents)[0]
    assert len(scores) == 240
    sizes = [len(r["body"]["input"]["documents"]) for r in fake_dashscope.requests]
    images = [sum("image" in d for d in r["body"]["input"]["documents"]) for r in fake_dashscope.requests]
    assert sum(sizes) == 240 and max(sizes) <= 100 and max(images) <= 40


def test_multimodal_inputs_dashscope_cannot_take_are_refused_before_sending(fake_dashscope):
    vl = Reranker.from_dashscope("qwen3-vl-rerank", api_key=API_KEY, base_url=fake_dashscope.base_url)
    with pytest.raises(InvalidInputError, match=r"^documents\[0\]: qwen3-vl-rerank takes one text or one image"):
        vl.rerank("q", [{"text": "t", "image": "https://example.com/a.png"}])
    with pytest.raises(InvalidInputError, match=r"^documents\[1\]\.image\[0\]|^documents\[1\]: .*format"):
        vl.rerank("q", ["ok", {"image": b"not an image"}])
    with pytest.raises(InvalidInputError, match=r"gte-rerank-v2 takes text only, not images"):
        reranker(fake_dashscope).rerank("q", [{"image": "https://example.com/a.png"}])
    assert fake_dashscope.requests == []
