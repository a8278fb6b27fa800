"""Planning model calls: rows grouped by shared token prefix, and padded batches of similar length under a budget."""

import numpy as np

from rerank_core.families.qwen3.encoder import PairTokenizer
from rerank_core.families.qwen3.template import format_content
from rerank_core.planning import budget_batches, plan_prefix_groups
from rerank_core.tiny_model import tiny_model_dir

ids = [np.array(x) for x in ([1, 2, 3, 4, 9], [1, 2, 3, 4, 8, 8], [1, 2, 5, 6], [1, 2, 3, 4, 9], [1, 2, 7])]


def _groups(heads, base=2, max_prefix=100):
    return {g.length: g.rows.tolist() for g in plan_prefix_groups(ids, heads, base, max_prefix)}


def test_rows_of_one_head_share_their_common_token_prefix_and_the_rest_share_the_system_prefix():
    assert _groups(["a", "a", "b", "a", "c"]) == {2: [2, 4], 4: [0, 1, 3]}
    assert _groups(None) == {2: [0, 1, 2, 3, 4]}  # heads unknown: only the system prefix


def test_a_prefix_leaves_each_row_a_token_of_its_own_and_stays_under_its_cap():
    assert _groups(["a", "x", "y", "a", "z"]) == {2: [1, 2, 4], 4: [0, 3]}  # identical rows: the last token is theirs
    assert _groups(["a", "a", "b", "a", "c"], max_prefix=3) == {2: [2, 4], 3: [0, 1, 3]}
    assert _groups(["a", "a", "b", "a", "c"], max_prefix=2) == {2: [0, 1, 2, 3, 4]}  # nothing beyond the base


def test_batches_cover_every_row_once_left_padded_and_under_budget():
    tok = PairTokenizer.from_file(tiny_model_dir() / "tokenizer.json", pad_id=0)
    rng = np.random.default_rng(0)
    contents = [format_content("q", "word " * int(n)) for n in rng.integers(1, 300, size=57)]
    enc = tok.encode(contents)
    budget = 2048
    seen = []
    for batch in budget_batches(enc.ids, budget, 16, pad_id=0, right_padding=False):
        rows, width = batch.input_ids.shape
        assert rows <= 16
        assert rows == 1 or rows * width <= budget
        assert width == max(enc.lengths[batch.indices])
        for r, i in enumerate(batch.indices):
            n = enc.lengths[i]
            assert batch.attention_mask[r].tolist() == [0] * (width - n) + [1] * n  # left padding
            assert batch.input_ids[r, width - n :].tolist() == enc.ids[i].tolist()
            assert (batch.input_ids[r, : width - n] == 0).all()
        seen.extend(batch.indices.tolist())
    assert sorted(seen) == list(range(57))


def test_a_row_longer_than_the_budget_goes_alone():
    tok = PairTokenizer.from_file(tiny_model_dir() / "tokenizer.json", pad_id=0)
    enc = tok.encode([format_content("q", "data " * 400), format_content("q", "x")])
    batches = list(budget_batches(enc.ids, 100, 8, pad_id=0, right_padding=False))
    assert [len(b.indices) for b in batches] == [1, 1]


def test_length_bucketing_wastes_less_padding_than_fixed_batches():
    tok = PairTokenizer.from_file(tiny_model_dir() / "tokenizer.json", pad_id=0)
    rng = np.random.default_rng(1)
    contents = [format_content("q", "data " * int(n)) for n in rng.integers(20, 500, size=64)]
    enc = tok.encode(contents)
    real = enc.lengths.sum()
    ours = sum(b.input_ids.size for b in budget_batches(enc.ids, 8 * 600, 8, pad_id=0, right_padding=False))
    fixed = sum(8 * enc.lengths[i : i + 8].max() for i in range(0, 64, 8))
    assert ours < fixed
    assert (ours - real) / real < 0.10


def _plan(lengths, budget, max_rows, overhead=None):
    rows = [np.ones(n, dtype=np.int64) for n in lengths]
    return list(budget_batches(rows, budget, max_rows, pad_id=0, right_padding=True, call_overhead_tokens=overhead))


def _cost(batches, overhead):
    return sum(overhead + b.input_ids.size for b in batches)


def _cheapest_by_search(lengths, budget, max_rows, overhead):
    """Every way of cutting the longest-first rows into contiguous calls, tried."""
    ordered = sorted(lengths, reverse=True)

    def best(start):
        if start == len(ordered):
            return 0
        options = []
        for end in range(start + 1, min(start + max_rows, len(ordered)) + 1):
            padded = ordered[start] * (end - start)
            if padded <= budget or end == start + 1:
                options.append(overhead + padded + best(end))
        return min(options)

    return best(0)


def test_gpu_calls_of_mixed_lengths_are_cut_where_they_cost_least():
    """With a per-call cost, a plan with more than 5% padding is re-cut to the cheapest one (checked against every
    contiguous cut of small sets); every row comes once, each call within the budget and the row cap."""
    rng = np.random.default_rng(4)
    for _ in range(40):
        lengths = rng.integers(5, 200, size=int(rng.integers(1, 11))).tolist()
        budget, max_rows, overhead = int(rng.integers(200, 900)), int(rng.integers(1, 6)), int(rng.integers(0, 300))
        batches = _plan(lengths, budget, max_rows, overhead)
        assert sorted(i for b in batches for i in b.indices.tolist()) == list(range(len(lengths)))
        assert all(len(b.indices) <= max_rows and (len(b.indices) == 1 or b.input_ids.size <= budget) for b in batches)
        greedy = _plan(lengths, budget, max_rows)
        padding = 1 - sum(lengths) / sum(b.input_ids.size for b in greedy)
        if padding > 0.05:
            assert _cost(batches, overhead) == _cheapest_by_search(lengths, budget, max_rows, overhead)
        else:
            assert [b.indices.tolist() for b in batches] == [b.indices.tolist() for b in greedy]


def test_a_gpu_request_of_mixed_lengths_pays_less_padding():
    """128 rows of 20–500 tokens under the GPU defaults: one call padded 40%+ becomes a few, padded far less, and
    cheaper in all at a call's cost of 1,400 tokens (the H200's, backends/onnx/layouts.py)."""
    lengths = np.random.default_rng(5).integers(20, 500, size=128).tolist()
    greedy, cut = _plan(lengths, 65536, 256), _plan(lengths, 65536, 256, 1400)
    share = lambda batches: 1 - sum(lengths) / sum(b.input_ids.size for b in batches)
    assert len(greedy) == 1 and share(greedy) > 0.4
    assert share(cut) < 0.2 and _cost(cut, 1400) < 0.85 * _cost(greedy, 1400)
