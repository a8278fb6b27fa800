"""Content-only truncation, left padding and token-budget batching."""

import numpy as np
import pytest

from rerank_core.errors import ConfigError
from rerank_core.formatting import format_content
from rerank_core.testing import tiny_model_dir
from rerank_core.tokenization import PairTokenizer


def make(max_length=8192):
    return PairTokenizer.from_file(tiny_model_dir() / "tokenizer.json", pad_id=0, max_length=max_length)


def test_template_wraps_every_sequence():
    tok = make()
    enc = tok.encode([format_content("q", "short"), format_content("q", "a much longer document " * 5)])
    for ids in enc.ids:
        assert list(ids[: len(tok._prefix)]) == list(tok._prefix)
        assert list(ids[-len(tok._suffix) :]) == list(tok._suffix)
    assert enc.truncated.tolist() == [0, 0]


def test_truncation_cuts_content_only_and_counts_it():
    tok = make(max_length=120)
    long_doc = format_content("q", "machine learning data " * 200)
    full = len(tok._tokenizer.encode(long_doc, add_special_tokens=False).ids)
    enc = tok.encode([long_doc])
    ids = enc.ids[0]
    assert len(ids) == 120
    assert list(ids[-len(tok._suffix) :]) == list(tok._suffix)
    assert list(ids[: len(tok._prefix)]) == list(tok._prefix)
    assert enc.truncated[0] == full - tok.max_content_tokens > 0


def test_max_length_too_small_for_template_is_a_config_error():
    with pytest.raises(ConfigError, match="max_length"):
        make(max_length=10)


def test_batches_cover_every_row_once_left_padded_and_under_budget():
    tok = make()
    rng = np.random.default_rng(0)
    contents = [format_content("q", "word " * int(n)) for n in rng.integers(1, 300, size=57)]
    enc = tok.encode(contents)
    budget = 2048
    seen = []
    for batch in tok.batches(enc.ids, token_budget=budget, max_batch_size=16):
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
    tok = make()
    enc = tok.encode([format_content("q", "data " * 400), format_content("q", "x")])
    batches = list(tok.batches(enc.ids, token_budget=100, max_batch_size=8))
    assert [len(b.indices) for b in batches] == [1, 1]


def test_length_bucketing_wastes_less_padding_than_fixed_batches():
    tok = make()
    rng = np.random.default_rng(1)
    contents = [format_content("q", "data " * int(n)) for n in rng.integers(20, 500, size=64)]
    enc = tok.encode(contents)
    real = enc.lengths.sum()
    ours = sum(b.input_ids.size for b in tok.batches(enc.ids, token_budget=8 * 600, max_batch_size=8))
    fixed = sum(8 * enc.lengths[i : i + 8].max() for i in range(0, 64, 8))
    assert ours < fixed
    assert (ours - real) / real < 0.10
