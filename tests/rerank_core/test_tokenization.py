"""Content-only truncation: the template is never cut, and what was cut is counted."""

import pytest

from rerank_core.errors import ConfigError
from rerank_core.families.qwen3.encoder import PairTokenizer
from rerank_core.families.qwen3.template import format_content
from rerank_core.tiny_model import tiny_model_dir


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
