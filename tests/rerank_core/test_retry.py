"""Backoff policy: Retry-After honoured, exponential growth with jitter, typed error when tries run out."""

import pytest

from rerank_core.errors import UpstreamError
from rerank_core.retry import RetryableError, parse_retry_after, with_retries


def flaky(failures, retry_after=None):
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= failures:
            raise RetryableError(UpstreamError(503, "ServiceUnavailable", "busy", "req-1"), retry_after)
        return "ok"

    return attempt, calls


def test_succeeds_after_transient_failures_with_growing_backoff():
    waits = []
    attempt, calls = flaky(3)
    assert with_retries(attempt, max_retries=3, base_delay_s=1.0, sleep=waits.append) == "ok"
    assert len(calls) == 4 and len(waits) == 3
    for n, wait in enumerate(waits):  # jitter keeps each wait in [0.5, 1] × 2^n
        assert 0.5 * 2**n <= wait <= 2**n


def test_retry_after_is_honoured_and_capped():
    waits = []
    attempt, _ = flaky(2, retry_after=7.0)
    with_retries(attempt, max_retries=2, sleep=waits.append, max_delay_s=5.0)
    assert waits == [5.0, 5.0]


def test_gives_up_with_the_typed_error():
    attempt, calls = flaky(10)
    with pytest.raises(UpstreamError) as info:
        with_retries(attempt, max_retries=2, sleep=lambda s: None)
    assert len(calls) == 3 and info.value.status == 503 and info.value.request_id == "req-1"


def test_non_retryable_errors_pass_at_once():
    calls = []

    def attempt():
        calls.append(1)
        raise UpstreamError(401, "InvalidApiKey", "bad key")

    with pytest.raises(UpstreamError):
        with_retries(attempt, max_retries=5, sleep=lambda s: None)
    assert len(calls) == 1


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None and parse_retry_after("-1") == 0.0
