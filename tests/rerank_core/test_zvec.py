"""The zvec integration with a real zvec collection on disk: multi-query hook, single-query helper, endpoint mode."""

import numpy as np
import pytest

zvec = pytest.importorskip("zvec")
from zvec import CollectionSchema, DataType, Doc, FieldSchema, FlatIndexParam, Query, VectorSchema  # noqa: E402

from rerank_core.integrations.zvec import QwenReRanker, rerank_query  # noqa: E402
from rerank_core.tiny_model import TINY_MODEL  # noqa: E402

QUERY = "what is machine learning"
TEXTS = [
    "machine learning is a subset of ai",
    "coffee is brewed from beans",
    "python is a programming language",
    "the eiffel tower is in paris",
    "ml algorithms learn from data",
    "pizza is a popular food",
]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    schema = CollectionSchema(
        name="docs",
        fields=[FieldSchema("content", DataType.STRING, nullable=True)],
        vectors=[VectorSchema(n, DataType.VECTOR_FP32, dimension=8, index_param=FlatIndexParam()) for n in ("a", "b")],
    )
    col = zvec.create_and_open(str(tmp_path_factory.mktemp("zvec") / "col"), schema)
    rng = np.random.default_rng(0)
    docs = []
    for i in range(36):
        content = "" if i % 9 == 4 else f"{TEXTS[i % len(TEXTS)]} (doc {i})"
        docs.append(
            Doc(
                id=f"d{i}",
                fields={"content": content},
                vectors={"a": rng.standard_normal(8).tolist(), "b": rng.standard_normal(8).tolist()},
            )
        )
    assert all(s.ok() for s in col.insert(docs))
    return col


def queries(seed=1):
    rng = np.random.default_rng(seed)
    return [
        Query(field_name="a", vector=rng.standard_normal(8).tolist()),
        Query(field_name="b", vector=rng.standard_normal(8).tolist()),
    ]


def test_multi_query_search_is_reranked_by_local_qwen3(collection, tiny_reranker):
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=tiny_reranker)
    results = collection.query(queries(), topk=8, reranker=reranker)
    assert 0 < len(results) <= 8
    texts = [d.field("content") for d in results]
    assert all(texts)  # empty fields were skipped
    expected = tiny_reranker.score_pairs([(QUERY, t) for t in texts])
    assert [d.score for d in results] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [d.score for d in results] == sorted((d.score for d in results), reverse=True)
    assert len({d.id for d in results}) == len(results)


def test_single_query_helper_reranks(collection, tiny_reranker):
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=tiny_reranker)
    q = queries()[0]
    plain = collection.query(q, topk=20)
    results = rerank_query(collection, q, reranker, topk=5, candidates=20)
    assert len(results) == 5
    candidates = [d for d in plain if d.field("content")]
    scores = tiny_reranker.score_pairs([(QUERY, d.field("content")) for d in candidates])
    best = [candidates[i].id for i in np.argsort(-scores, kind="stable")[:5]]
    assert [d.id for d in results] == best


def test_dedupe_keeps_first_seen_and_skips_empty_fields(tiny_reranker):
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=tiny_reranker, topn=10)
    a = Doc(id="x", score=1.0, fields={"content": "machine learning"})
    a_again = Doc(id="x", score=2.0, fields={"content": "a different text"})
    empty = Doc(id="y", fields={"content": "   "})
    missing = Doc(id="z", fields={"other": "t"})
    b = Doc(id="w", fields={"content": "coffee beans"})
    out = reranker.rerank([[a, empty], [a_again, missing, b]])
    assert sorted(d.id for d in out) == ["w", "x"]
    x = next(d for d in out if d.id == "x")
    assert x.field("content") == "machine learning"  # first seen wins
    assert a.score == 1.0  # the inputs are not modified: copies come back


def test_legacy_dict_input_and_topn(tiny_reranker):
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=tiny_reranker, topn=4)
    docs = [Doc(id=f"d{i}", fields={"content": t}) for i, t in enumerate(TEXTS)]
    assert len(reranker.rerank({"a": docs[:3], "b": docs[3:]})) == 4
    assert len(reranker.rerank([docs], topn=2)) == 2  # a smaller topn passed in lowers it
    assert len(reranker.rerank([docs], topn=6)) == 4  # a larger one never raises it


def test_the_seeds_example_retrieves_20_and_returns_the_rerankers_5(collection, tiny_reranker):
    """zvec's documentation: QwenReRanker(topn=5) with collection.query(..., topk=20) gives the 5 best of 20."""
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=tiny_reranker, topn=5)
    results = collection.query(queries(), topk=20, reranker=reranker)
    assert len(results) == 5 and len({d.id for d in results}) == 5
    candidates = {}
    for q in queries():
        for d in collection.query(q, topk=20):
            if d.field("content") and d.id not in candidates:
                candidates[d.id] = d.field("content")
    assert len(candidates) > 5
    scores = tiny_reranker.score_pairs([(QUERY, t) for t in candidates.values()])
    best = [list(candidates)[i] for i in np.argsort(-scores, kind="stable")[:5]]
    assert [d.id for d in results] == best
    assert len(rerank_query(collection, queries()[0], reranker, topk=10, candidates=20)) == 5


def test_errors_match_qwen_reranker(tiny_reranker):
    with pytest.raises(ValueError, match="Query is required"):
        QwenReRanker(query="", rerank_field="content", model=tiny_reranker)
    reranker = QwenReRanker(query=QUERY, rerank_field="content", model=TINY_MODEL)
    with pytest.raises(ValueError, match="No documents to rerank"):
        reranker.rerank([[Doc(id="a", fields={"content": ""})]])
    assert reranker.rerank([]) == []
    with pytest.raises(ValueError, match="exactly one"):
        QwenReRanker(query=QUERY, rerank_field="content")


@pytest.mark.slow
def test_endpoint_mode_against_the_serve_app(serve_url, tiny_reranker):
    reranker = QwenReRanker(query=QUERY, rerank_field="content", endpoint=serve_url)
    docs = [Doc(id=f"d{i}", fields={"content": t}) for i, t in enumerate(TEXTS)]
    out = reranker.rerank([docs], topn=6)
    expected = dict(zip([f"d{i}" for i in range(len(TEXTS))], tiny_reranker.score_pairs([(QUERY, t) for t in TEXTS])))
    assert {d.id: d.score for d in out} == pytest.approx(expected, abs=1e-5)
