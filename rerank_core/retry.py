"""Retry with exponential backoff and jitter, honouring Retry-After; shared by every HTTP client here."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import UpstreamError

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class RetryableError(Exception):
    """A failure worth another try (429, 5xx, connection error), wrapping the error to raise if tries run out."""

    def __init__(self, error: UpstreamError, retry_after_s: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (HTTP dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def with_retries(
    attempt: Callable[[], T],
    *,
    max_retries: int,
    base_delay_s: float = 0.25,
    max_delay_s: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `attempt` until it returns; on RetryableError wait (Retry-After, else 2^n backoff with jitter) and retry.

    After `max_retries` retries the last wrapped UpstreamError is raised; any other exception passes at once.
    """
    for n in range(max_retries + 1):
        try:
            return attempt()
        except RetryableError as exc:
            if n == max_retries:
                raise exc.error from None
            backoff = base_delay_s * (2**n) * (0.5 + random.random() / 2)
            sleep(min(max_delay_s, exc.retry_after_s if exc.retry_after_s is not None else backoff))
    raise AssertionError("unreachable")
