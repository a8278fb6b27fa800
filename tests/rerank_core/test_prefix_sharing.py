"""Prefix sharing: each query's prompt prefix runs once, and every score stays the official recipe's."""

import dataclasses

import numpy as np
import pytest

from rerank_core.api import load_reranker
from rerank_core.backends.onnx import OnnxScorer
from rerank_core.config import ModelConfig
from rerank_core.export import export_checkpoint
from rerank_core.families.qwen3.template import format_document, format_query
from rerank_core.planning import plan_prefix_groups
from rerank_core.tiny_model import tiny_model_dir
from rerank_core.tokenization import EncodedPairs

TOL = 1e-4


def test_requests_merged_into_one_call_share_a_query_prefix():
    scorer = OnnxScorer.open(tiny_model_dir())
    first = scorer.prepare([("what is ml?", "ML learns from data."), ("tea?", "Green tea.")]).payload
    second = scorer.prepare([("what is ml?", "Pizza is food.")]).payload
    merged = EncodedPairs.concat([first, second])
    groups = plan_prefix_groups(merged.ids, merged.heads, len(scorer.tokenizer.prefix_ids), 512)
    assert sorted(g.rows.tolist() for g in groups) == [[0, 2], [1]]


@pytest.fixture(scope="module")
def many_docs():
    rng = np.random.default_rng(11)
    words = "cat dog machine learning data pizza coffee python garden movie weather Paris café 日本語".split()
    return [
        ("What is machine learning used for today?", " ".join(rng.choice(words, size=int(rng.integers(1, 40)))))
        for _ in range(40)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("budget,rows", [(512, 32), (64, 4), (100_000, 64)])
def test_many_documents_per_query_equal_official(tiny_export, official, many_docs, budget, rows):
    scorer = OnnxScorer.open(tiny_export, token_budget=budget, max_rows_per_call=rows)
    assert scorer.shares_prefix
    np.testing.assert_allclose(scorer.score(many_docs), official(many_docs), atol=TOL)


@pytest.mark.slow
def test_several_queries_and_instructions_in_one_call_equal_official(tiny_export, official, many_docs, mixed_pairs):
    scorer = OnnxScorer.open(tiny_export)
    items = [
        scorer.prepare(mixed_pairs),
        scorer.prepare(many_docs[:7], instruction="Find the answer"),
        scorer.prepare(many_docs[7:12]),
        scorer.prepare(mixed_pairs[:2], instruction="Judge it"),
    ]
    outs = scorer.score_prepared(items)
    want = [
        official(mixed_pairs),
        official(many_docs[:7], "Find the answer"),
        official(many_docs[7:12]),
        official(mixed_pairs[:2], "Judge it"),
    ]
    for out, expected in zip(outs, want):
        np.testing.assert_allclose(out.scores, expected, atol=TOL)


@pytest.mark.slow
def test_a_query_longer_than_the_budget_and_truncation_equal_official(tiny_export, official):
    query = "Which garden movie about coffee and machine learning " * 12  # well over a 64-token budget
    pairs = [(query, "Pizza data " * n) for n in (1, 5, 30, 80)]
    scorer = OnnxScorer.open(tiny_export, token_budget=64, max_rows_per_call=4, max_length=300)
    out = scorer.score_detailed(pairs)
    assert (out.truncated > 0).any()
    np.testing.assert_allclose(out.scores, official(pairs, max_length=300), atol=TOL)


@pytest.mark.slow
def test_seed_style_preformatted_input_equals_official(tiny_export, official, many_docs):
    pairs = [(format_query(q, "Rank it"), format_document(d)) for q, d in many_docs[:10]]
    np.testing.assert_allclose(OnnxScorer.open(tiny_export).score(pairs), official(pairs), atol=TOL)


@pytest.mark.slow
def test_left_truncation_with_sharing_keeps_the_documents_end(tiny_export, many_docs):
    pairs = [(q, d + " tail" * 60) for q, d in many_docs[:6]]
    on, off = (OnnxScorer.open(tiny_export, max_length=100, share_prefix=s) for s in (True, False))
    got = [s.score_prepared([s.prepare(pairs, truncation="left")])[0] for s in (on, off)]
    assert (got[0].truncated > 0).all()
    np.testing.assert_allclose(got[0].scores, got[1].scores, atol=1e-5)


def test_the_switch_turns_sharing_off_and_scores_stay(many_docs):
    on = load_reranker(ModelConfig(model=str(tiny_model_dir())))
    off = load_reranker(ModelConfig(model=str(tiny_model_dir()), share_prefix=False))
    assert on.scorer.shares_prefix and not off.scorer.shares_prefix
    np.testing.assert_allclose(on.score_pairs(many_docs), off.score_pairs(many_docs), atol=1e-5)


@pytest.mark.slow
def test_a_plain_export_without_past_kv_still_scores_like_official(tiny_checkpoint, official, mixed_pairs, tmp_path):
    """Graphs of exporter version ≤ 2 (and `past_kv=False` exports): input_ids + attention_mask, left padding."""
    folder = export_checkpoint(tiny_checkpoint, tmp_path / "plain", dtypes=["f32"], past_kv=False)
    scorer = OnnxScorer.open(folder)
    assert scorer.layout.name == "plain" and not scorer.shares_prefix and not scorer.layout.right_padded
    assert [i.name for i in scorer.session.get_inputs()] == ["input_ids", "attention_mask"]
    np.testing.assert_allclose(scorer.score(mixed_pairs), official(mixed_pairs), atol=TOL)


def test_a_replaced_session_computes_its_own_system_prompt_kv(tiny_export, mixed_pairs):
    """replace_session (another runtime or graph, as the benches swap in) must not keep the old session's K/V."""
    f16 = OnnxScorer.open(tiny_export, dtype="f16")
    swapped = OnnxScorer.open(tiny_export, dtype="f32")
    swapped.replace_session(f16.session)  # f16 K/V inputs: the f32 system-prompt K/V would not even be accepted
    np.testing.assert_allclose(swapped.score(mixed_pairs), f16.score(mixed_pairs), atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_a_prefix_extended_a_few_tokens_per_call_has_the_same_kv_as_in_one_call(tiny_export, chunk):
    """A prefix computed one, two, … tokens per call (as the token budget may cut it) has the same keys and values."""
    scorer = OnnxScorer.open(tiny_export)
    layout, ids = scorer.layout, np.array(scorer.tokenizer.prefix_ids)
    whole = layout.extend(layout.empty_prefix, ids, len(ids))
    for got, want in zip(layout.extend(layout.empty_prefix, ids, chunk).tensors, whole.tensors):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_request_scored_one_pair_per_call_reuses_its_cached_prefix_exactly(many_docs):
    """What a replica's scheduler does to a bulk request: its pairs over many calls, the query's K/V computed once."""
    whole = OnnxScorer.open(tiny_model_dir(), prefix_cache_bytes=0)
    cut = OnnxScorer.open(tiny_model_dir())
    prepared = cut.prepare(many_docs)
    expected = whole.score(many_docs)
    assert whole.prefix_cache is None and len(cut.prefix_cache) == 0
    pieces = [cut.score_prepared([prepared.select([row])])[0].scores[0] for row in range(len(many_docs))]
    np.testing.assert_allclose(pieces, expected, atol=1e-6)
    assert len(cut.prefix_cache) == 1  # one query, one cached prefix
    assert all(prepared.costs < prepared.tokens)  # the shared prefix is not counted as each pair's work


def test_the_prefix_cache_stays_within_its_bytes():
    scorer = OnnxScorer.open(tiny_model_dir())
    one = scorer.prepare([("query number 0 about cats", "a"), ("query number 0 about cats", "b")])
    scorer.score_prepared([one])
    entry = scorer.prefix_cache.bytes
    bounded = OnnxScorer.open(tiny_model_dir(), prefix_cache_bytes=3 * entry)
    for k in range(10):
        bounded.score([(f"query number {k} about cats", "a"), (f"query number {k} about cats", "b")])
        assert bounded.prefix_cache.bytes <= 3 * entry
    assert len(bounded.prefix_cache) == 3


def test_a_query_with_one_document_shares_nothing_and_is_not_cached():
    scorer = OnnxScorer.open(tiny_model_dir())
    scorer.score([("q1", "a"), ("q2", "b"), ("q3", "c")])
    assert len(scorer.prefix_cache) == 0


@pytest.mark.parametrize("dtype", ["f32", "int8"])
def test_a_pair_computed_ahead_in_pieces_scores_as_in_one_call(tiny_export, official, mixed_pairs, dtype):
    """What a replica's scheduler does to a long pair: its tokens computed ahead over several calls (prefill), then
    scored beside another request's pairs; the score is the one call's, and the official recipe's."""
    scorer = OnnxScorer.open(tiny_export, dtype=dtype)
    long = [("What is machine learning?", " ".join(["learning data python"] * 60))] + mixed_pairs[:3]
    prepared, others = scorer.prepare(long), scorer.prepare(mixed_pairs[3:8])
    expected = scorer.score_prepared([prepared, others])
    state, done = None, 0
    while prepared.costs[0] - done > 40:
        state, done = scorer.prefill(prepared, 0, state, 40), done + 40
        assert state.done == () and state.kv.length < prepared.tokens[0]  # the last token is left to score
    resumed = dataclasses.replace(prepared.select([2, 0, 1]), prefilled={1: state})
    got = scorer.score_prepared([others, resumed])
    assert done >= 120
    np.testing.assert_allclose(got[1].scores, expected[0].scores[[2, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(got[0].scores, expected[1].scores, atol=1e-6)
    if dtype == "f32":
        np.testing.assert_allclose(got[1].scores[1], official(long[:1]), atol=TOL)


def test_a_pair_in_windows_is_computed_ahead_window_by_window(tiny_export):
    """A long document scored in windows, computed ahead 70 tokens at a time beside a short pair: finished windows
    keep their logits, the next one's K/V grow; score and deciding window as in one call."""
    scorer = OnnxScorer.open(tiny_export)
    pairs = [("q about data", "short doc"), ("q about data", " ".join(f"data{i % 17} pizza" for i in range(400)))]
    spec = {"mode": "chunk", "window_tokens": 120, "max_windows": 8}
    prepared = scorer.prepare(pairs, long_documents=spec)
    expected = scorer.score_prepared([prepared])[0]
    state, done, seen = None, 0, []
    while prepared.costs[1] - done > 70:
        state, done = scorer.prefill(prepared, 1, state, 70), done + 70
        seen.append(len(state.done))
    assert seen[-1] >= 3 and seen == sorted(seen)  # windows finished on the way
    got = scorer.score_prepared([dataclasses.replace(prepared, prefilled={1: state})])[0]
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-6)
    np.testing.assert_array_equal(got.windows, expected.windows)


class RecordingSession:
    """The real session, recording how many new tokens each run computes."""

    def __init__(self, session):
        self.session, self.tokens = session, []

    def run(self, outputs, feed):
        self.tokens.append(feed["input_ids"].size)
        return self.session.run(outputs, feed)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_a_row_longer_than_the_budget_runs_a_budget_at_a_time_and_scores_as_official(tiny_export, official):
    """Memory per call is bounded by the token budget, whatever the document's length: a long row's K/V grow a
    budget at a time and its last piece is scored; same scores as one run, and as the official recipe."""
    pairs = [("What is machine learning?", "Pizza data learning " * n) for n in (2, 60, 150)]
    one_run = OnnxScorer.open(tiny_export, token_budget=100_000).score(pairs)
    scorer = OnnxScorer.open(tiny_export, token_budget=64)
    scorer.replace_session(RecordingSession(scorer.session))
    scores = scorer.score(pairs)
    assert max(scorer.session.tokens) <= 64 and len(scorer.session.tokens) > 10
    np.testing.assert_allclose(scores, one_run, atol=1e-5)
    np.testing.assert_allclose(scores, official(pairs), atol=TOL)
