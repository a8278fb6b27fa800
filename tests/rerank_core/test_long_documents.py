"""Long documents in overlapping windows of their tokens: where windows lie, exact scores per window, aggregation,
the deciding window's characters, and the per-call setting."""

import numpy as np
import pytest

from rerank_core import InvalidInputError, Reranker
from rerank_core.backends.onnx import OnnxScorer
from rerank_core.config import LongDocuments
from rerank_core.errors import ConfigError
from rerank_core.tiny_model import TINY_MODEL, tiny_model_dir
from rerank_core.windows import plan_windows

LONG = " ".join(f"passage {i} about cats, dogs and the weather in Paris." for i in range(60))
QUERY = "what do cats like?"


def test_windows_overlap_by_the_asked_tokens_until_one_reaches_the_end():
    spans, cut = plan_windows(100, 30, LongDocuments(mode="chunk"))  # window 30, overlap 30 // 8 = 3
    assert spans == [(0, 30), (27, 57), (54, 84), (81, 100)] and cut == 0
    spans, cut = plan_windows(100, 30, LongDocuments(mode="chunk", window_tokens=20, overlap_tokens=10))
    assert spans[:3] == [(0, 20), (10, 30), (20, 40)] and spans[-1] == (80, 100) and cut == 0
    spans, cut = plan_windows(100, 30, LongDocuments(mode="chunk", max_windows=2))
    assert spans == [(0, 30), (27, 57)] and cut == 43
    assert plan_windows(100, 30, LongDocuments(mode="chunk", window_tokens=500))[0][0] == (0, 30)  # at most what fits
    assert plan_windows(10, 30, LongDocuments(mode="chunk")) == ([(0, 10)], 0)
    assert plan_windows(0, 30, LongDocuments(mode="chunk")) == ([(0, 0)], 0)


def test_window_zero_is_the_pair_truncation_scores():
    scorer = OnnxScorer.open(tiny_model_dir(), max_length=256)
    pairs = [(QUERY, LONG), (QUERY, "short document"), ("other query", LONG[:300])]
    truncated = scorer.prepare(pairs)
    windowed = scorer.prepare(pairs, long_documents={"mode": "chunk", "max_windows": 64})
    starts = windowed.payload.row_starts
    for i in range(len(pairs)):
        np.testing.assert_array_equal(windowed.payload.ids[starts[i]], truncated.payload.ids[i])
    assert starts[1] - starts[0] > 5 and starts[2] - starts[1] == 1  # the short document is one window
    assert truncated.truncated[0] > 0 and windowed.truncated[0] == 0  # every token of it is seen
    assert windowed.tokens[0] > truncated.tokens[0]  # token limits count every window
    cut = scorer.score(pairs)
    first = scorer.score(pairs, long_documents={"mode": "chunk", "aggregate": "first"})
    best = scorer.score(pairs, long_documents="chunk")
    mean = scorer.score(pairs, long_documents={"mode": "chunk", "aggregate": "mean"})
    np.testing.assert_allclose(first, cut, atol=1e-6)
    assert np.all(best >= cut - 1e-6) and np.all(best >= mean - 1e-6)


def test_the_deciding_window_is_reported_in_characters_of_the_document():
    reranker = Reranker.from_pretrained(TINY_MODEL, max_length=256, long_documents={"mode": "chunk", "max_windows": 64})
    scorer = reranker.scorer
    prepared = scorer.prepare([(QUERY, LONG)])
    spans, starts = prepared.payload.spans, prepared.payload.row_starts
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG)
    assert all(spans[k + 1][0] < spans[k][1] for k in range(len(spans) - 1))  # they overlap
    for (a, b), ids in zip(spans, prepared.payload.ids):
        text = scorer.tokenizer._tokenizer.decode(ids.tolist(), skip_special_tokens=False)
        assert LONG[a:b].strip() in text
    ranked = reranker.rerank(QUERY, [LONG, "cats like fish"])[0].documents
    by_index = {d.index: d for d in ranked}
    row_scores = scorer.score_prepared([prepared])[0]
    assert by_index[0].window == tuple(row_scores.windows[0]) and by_index[1].window == (0, len("cats like fish"))
    assert len(starts) == 2
    plain = Reranker.from_pretrained(TINY_MODEL, max_length=256).rerank(QUERY, [LONG])[0].documents[0]
    assert plain.window is None


def test_all_windows_of_a_document_share_the_query_prefix():
    scorer = OnnxScorer.open(tiny_model_dir(), max_length=256)
    prepared = scorer.prepare([(QUERY, LONG)], long_documents="chunk")
    encoded = prepared.payload
    assert len(set(encoded.head_lengths.tolist())) == 1 and encoded.head_lengths[0] > len(scorer.tokenizer.prefix_ids)
    assert prepared.costs[0] < prepared.tokens[0]


def test_bad_settings_are_refused_naming_the_field():
    scorer = OnnxScorer.open(tiny_model_dir())
    with pytest.raises(InvalidInputError, match="long_documents"):
        scorer.score([(QUERY, LONG)], long_documents={"mode": "pages"})
    with pytest.raises(InvalidInputError, match="overlap_tokens"):
        scorer.score([(QUERY, LONG)], long_documents={"mode": "chunk", "window_tokens": 10, "overlap_tokens": 10})
    with pytest.raises(ConfigError, match="long_documents"):
        Reranker.from_pretrained(TINY_MODEL, long_documents={"aggregate": "median"})
    remote = Reranker.from_endpoint("http://127.0.0.1:9")  # refused before any request is sent
    with pytest.raises(InvalidInputError, match="chunk mode needs a local model"):
        remote.score_pairs([(QUERY, LONG)], long_documents="chunk")


@pytest.mark.slow
@pytest.mark.parametrize("share_prefix", [True, False])
def test_every_window_scores_as_the_official_recipe_in_mixed_batches(tiny_export, tiny_checkpoint, share_prefix):
    from tests.oracle import OfficialRecipe

    official = OfficialRecipe(tiny_checkpoint)
    scorer = OnnxScorer.open(tiny_export, max_length=256, token_budget=512, share_prefix=share_prefix)
    pairs = [(QUERY, LONG), (QUERY, "cats sleep a lot"), ("weather in Paris?", LONG[:700]), (QUERY, LONG[500:])]
    for aggregate in ("max", "mean", "first"):
        spec = {"mode": "chunk", "window_tokens": 40, "overlap_tokens": 8, "aggregate": aggregate}
        prepared = scorer.prepare(pairs, long_documents=spec)
        out = scorer.score_prepared([prepared])[0]
        per_window = official.score_ids(prepared.payload.ids)
        starts = prepared.payload.row_starts
        assert np.diff(starts).tolist()[:2] == [16, 1]  # a long document in 16 windows beside a short one
        for i in range(len(pairs)):
            window = per_window[starts[i] : starts[i + 1]]
            expected = {"max": window.max(), "mean": window.mean(), "first": window[0]}[aggregate]
            assert abs(out.scores[i] - expected) <= 1e-4, (aggregate, i)
            decided = 0 if aggregate == "first" else int(np.argmax(window))
            assert tuple(out.windows[i]) == tuple(prepared.payload.spans[starts[i] + decided])
