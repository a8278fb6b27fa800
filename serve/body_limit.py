"""Bounded request bodies: a body past `max_body_bytes` is refused while it arrives, and the rest is never read.

The same ASGI middleware guards Serve's HTTP proxy (which would otherwise buffer a whole upload before any replica
sees it) and each replica. The proxy gets it through Ray's RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH hook.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import MAX_BODY_BYTES
from .protocols import error_style

PROXY_LIMIT_ENV = "QWEN_RERANK_PROXY_MAX_BODY_BYTES"
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve.body_limit:proxy_middlewares"


class BodyLimit:
    """Reads a POST body up to the limit and hands it on; past the limit answers 413 in the route's dialect."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | Callable[[], int | None]):
        self.app = app
        self._limit = max_body_bytes if callable(max_body_bytes) else (lambda: max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit() if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") else None
        if not limit:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(scope, receive, send, 400, "content-length", "not an integer")
                return
            if int(declared) > limit:
                await _refuse(
                    scope, receive, send, 413, "body", f"{int(declared)} bytes exceeds max_body_bytes={limit}"
                )
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:  # a chunked body, or one longer than it declared: stop reading here
                await _refuse(
                    scope, receive, send, 413, "body", f"more than max_body_bytes={limit} bytes; the rest was not read"
                )
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then waits on the client (for its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, field: str, message: str) -> None:
    status, body = error_style(scope["path"])(status, field, message)
    # Closing the connection tells the client to stop sending; the unread rest is dropped by the server.
    await JSONResponse(body, status_code=status, headers={"connection": "close"})(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """The middlewares Serve's HTTP proxy applies (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH points here)."""
    return [Middleware(BodyLimit, max_body_bytes=int(os.environ.get(PROXY_LIMIT_ENV, MAX_BODY_BYTES)))]


def guard_the_proxy(max_body_bytes: int) -> None:
    """Have the Serve proxy of a Ray started by this process enforce `max_body_bytes` (set before Ray starts)."""
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    os.environ.setdefault(PROXY_LIMIT_ENV, str(max_body_bytes))
