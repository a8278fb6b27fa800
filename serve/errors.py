"""Errors as each dialect answers them: one ApiError raised anywhere, rendered in the shape of the route (or body)
that asked."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from http import HTTPStatus

from .routes import (
    COHERE_ROUTES,
    COMPATIBLE_ROUTE,
    DASHSCOPE_ROUTE,
    MIXEDBREAD_ROUTE,
    MODELS_ROUTE,
    NIM_ROUTE,
    SCORE_ROUTES,
    TEI_ROUTE,
)


class ApiError(Exception):
    """An error answered to the client: HTTP status, the field at fault, and a message naming the limit."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def __reduce__(self):  # pickled with its arguments: a model replica's error reaches the gateway as it was raised
        return type(self), (self.status, self.field, self.message)


def _text(field: str | None, message: str) -> str:
    return f"{field}: {message}" if field else message


_DASHSCOPE_CODES = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "InvalidParameter",
    429: "Throttling",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "RequestTimeOut",
}
_OPENAI_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    413: "BadRequestError",
    429: "RateLimitError",
    502: "InternalServerError",
    503: "ServiceUnavailableError",
    504: "TimeoutError",
}
_COMPATIBLE_CODES = {
    400: "invalid_parameter_error",
    401: "invalid_api_key",
    404: "model_not_found",
    413: "invalid_parameter_error",
    429: "throttling",
    503: "service_unavailable",
    504: "request_timeout",
}
_TEI_TYPES = {401: "unauthorized", 413: "validation", 422: "validation", 429: "overloaded", 503: "overloaded"}


def cohere_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """Cohere/Jina style: {message, field}."""
    return status, {"message": _text(field, message), "field": field}


def dashscope_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """DashScope's native style: {code, message, request_id}."""
    code = _DASHSCOPE_CODES.get(status, "InternalError")
    return status, {"code": code, "message": _text(field, message), "request_id": uuid.uuid4().hex}


def openai_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """vLLM's and Infinity's style: {error: {message, type, param, code}}."""
    kind = _OPENAI_TYPES.get(status, "InternalServerError")
    return status, {"error": {"message": _text(field, message), "type": kind, "param": field, "code": status}}


def compatible_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """DashScope's OpenAI-compatible style: {error: {message, type, param, code}, request_id}."""
    error = {
        "message": _text(field, message),
        "type": "invalid_request_error",
        "param": field,
        "code": _COMPATIBLE_CODES.get(status, "internal_error"),
    }
    return status, {"error": error, "request_id": uuid.uuid4().hex}


def tei_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """Text Embeddings Inference's style: {error, error_type}; input it cannot take is a 422."""
    status = 422 if status == 400 else status
    return status, {"error": _text(field, message), "error_type": _TEI_TYPES.get(status, "backend")}


def nim_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """NVIDIA NIM's style (RFC 9457 problem details): {type, title, status, detail}."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return status, {"type": "about:blank", "title": title, "status": status, "detail": _text(field, message)}


def detail_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """Voyage's and Mixedbread's style: {detail}, the message their SDKs raise with."""
    return status, {"detail": _text(field, message)}


ErrorStyle = Callable[[int, "str | None", str], "tuple[int, dict]"]
_ROUTE_STYLES: dict[str, ErrorStyle] = {
    **dict.fromkeys(COHERE_ROUTES, cohere_error),
    DASHSCOPE_ROUTE: dashscope_error,
    COMPATIBLE_ROUTE: compatible_error,
    TEI_ROUTE: tei_error,
    **dict.fromkeys(SCORE_ROUTES, openai_error),
    NIM_ROUTE: nim_error,
    MIXEDBREAD_ROUTE: detail_error,
    MODELS_ROUTE: openai_error,
}


def error_style(path: str) -> ErrorStyle:
    """The error shape of the route `path` ends with (longest match; Cohere's for unknown paths)."""
    for route in sorted(_ROUTE_STYLES, key=len, reverse=True):
        if path.endswith(route):
            return _ROUTE_STYLES[route]
    return cohere_error
