"""Typed errors raised by rerank_core: one base class, a few precise subclasses."""

from __future__ import annotations


class RerankError(Exception):
    """Base class of every error rerank_core raises on purpose."""


class InvalidInputError(RerankError, ValueError):
    """Input that cannot be scored; `field` names the offending input, `limit` the rule it broke."""

    def __init__(self, field: str, message: str, limit: str | None = None):
        self.field = field
        self.limit = limit
        self._message = message
        super().__init__(f"{field}: {message}" + (f" (limit: {limit})" if limit else ""))

    def __reduce__(self):  # pickled with the arguments it was made from, so it crosses Ray's process boundaries
        return type(self), (self.field, self._message, self.limit)


class ImageRefusedError(InvalidInputError):
    """An image refused before model work; `reason` is a short stable word for metrics (size, pixels, format, ...)."""

    def __init__(self, field: str, message: str, limit: str | None = None, reason: str = "invalid"):
        self.reason = reason
        super().__init__(field, message, limit)

    def __reduce__(self):  # pickled with the arguments it was made from, so it crosses Ray's process boundaries
        return type(self), (self.field, self._message, self.limit, self.reason)


class ModelNotFoundError(RerankError, FileNotFoundError):
    """The model could not be located locally, in the cache, or on the Hub."""


class ModelFormatError(RerankError):
    """A model folder exists but lacks a file or holds a graph we cannot score with."""


class ConfigError(RerankError, ValueError):
    """A configuration file or value failed validation; the message carries the key path."""


class DeviceMemoryError(RerankError, MemoryError):
    """A model call did not fit the device's free memory even one row at a time; retryable once memory frees up."""


class UpstreamError(RerankError):
    """A remote reranking service answered with an error after retries; never carries the API key."""

    def __init__(self, status: int | None, code: str, message: str, request_id: str | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(f"upstream error status={status} code={code} request_id={request_id}: {message}")

    def __reduce__(self):  # pickled with the arguments it was made from, so it crosses Ray's process boundaries
        return type(self), (self.status, self.code, self.message, self.request_id)
