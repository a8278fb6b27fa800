"""A model call the device's memory refuses: split in halves until it fits (same scores), and where one row alone does
not fit, a retryable DeviceMemoryError while the scorer goes on scoring. The allocation failures are real: ONNX
Runtime's CPU arena capped by `memory_limit_mib`, the same arena class its CUDA provider allocates from."""

import numpy as np
import pytest

from rerank_core import ConfigError, DeviceMemoryError
from rerank_core.backends.onnx import OnnxScorer
from rerank_core.tiny_model import tiny_model_dir

CAP_MIB = 64  # one CPU arena per process: every test here uses the same cap
CALLS = {"token_budget": 8192, "max_rows_per_call": 32}  # 32 rows of ~300 tokens in one call: more than the cap holds


@pytest.fixture(scope="module")
def pairs():
    return [("what is it about?", f"document {i}: " + "some words about things " * 40) for i in range(32)]


def test_a_call_too_big_for_the_memory_cap_is_split_until_it_fits_with_the_same_scores(pairs):
    whole = OnnxScorer.open(tiny_model_dir(), **CALLS)
    capped = OnnxScorer.open(tiny_model_dir(), memory_limit_mib=CAP_MIB, **CALLS)
    np.testing.assert_array_equal(capped.score(pairs), whole.score(pairs))
    assert capped.memory_splits > 0 and whole.memory_splits == 0


def test_a_row_too_big_alone_raises_a_retryable_error_and_the_scorer_goes_on(pairs):
    capped = OnnxScorer.open(tiny_model_dir(), memory_limit_mib=CAP_MIB, **CALLS)
    with pytest.raises(DeviceMemoryError, match="did not fit the device's free memory even one row at a time"):
        capped.score([("q", "word " * 3000)])
    assert isinstance(DeviceMemoryError("x"), MemoryError)  # callers that catch MemoryError see it too
    np.testing.assert_array_equal(capped.score(pairs[:4]), OnnxScorer.open(tiny_model_dir(), **CALLS).score(pairs[:4]))


def test_the_memory_cap_is_validated_naming_the_option():
    with pytest.raises(ConfigError, match="memory_limit_mib"):
        OnnxScorer.open(tiny_model_dir(), memory_limit_mib=0)
