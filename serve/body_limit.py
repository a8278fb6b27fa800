"""Bounded request bodies: a body past `max_body_bytes` is refused while it arrives, and the rest is never read; the
bodies a process holds at once past `max_buffered_body_bytes` are refused with a 503 (retry) as they arrive.

The same ASGI middleware guards Serve's HTTP proxy (which would otherwise buffer a whole upload before any replica
sees it) and each replica. The proxy gets it through Ray's RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH hook.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import MAX_BODY_BYTES, MAX_BUFFERED_BODY_BYTES, RETRY_AFTER_S
from .errors import error_style

PROXY_LIMIT_ENV = "QWEN_RERANK_PROXY_MAX_BODY_BYTES"
PROXY_BUFFERED_ENV = "QWEN_RERANK_PROXY_MAX_BUFFERED_BYTES"
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve.body_limit:proxy_middlewares"


Limit = Callable[[], int | None]


def _as_limit(value: int | Limit | None) -> Limit:
    """A limit given as a number (or None: none) or as a function read at each request."""
    return value if callable(value) else (lambda: value)


class _Refusal(Exception):
    """A request answered by the middleware itself: status, the field at fault, the message."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field = status, field


class BodyLimit:
    """Reads a POST body up to the limit and hands it on; past the limit answers 413 in the route's dialect. Bytes of
    bodies held at once (from their declared length, or as they arrive, until their request is answered) stay within
    `max_buffered_bytes`: past it a request gets 503 with Retry-After and the rest of its body is not read."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | Limit, max_buffered_bytes: int | Limit | None = None):
        self.app = app
        self._limit, self.budget = _as_limit(max_body_bytes), _as_limit(max_buffered_bytes)
        self.held = 0  # one event loop runs the middleware: no await between a check and its update

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit() if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") else None
        if not limit:
            await self.app(scope, receive, send)
            return
        hold = _Hold(self)
        try:
            body = await self._read(scope, receive, limit, hold)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        except _Refusal as refusal:
            await _refuse(scope, receive, send, refusal.status, refusal.field, str(refusal))
        finally:
            hold.release()

    async def _read(self, scope: Scope, receive: Receive, limit: int, hold: _Hold) -> bytes | None:
        """The whole body, held against the budget from its declared length or as it arrives; None if the client
        left. Raises _Refusal at the first byte past a limit, so the rest is never read."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Refusal(400, "content-length", "not an integer")
            if int(declared) > limit:
                raise _Refusal(413, "body", f"{int(declared)} bytes exceeds max_body_bytes={limit}")
            hold.grow_to(int(declared))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:  # a chunked body, or one longer than it declared
                raise _Refusal(413, "body", f"more than max_body_bytes={limit} bytes; the rest was not read")
            hold.grow_to(size)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Hold:
    """The part of a BodyLimit's budget one request holds."""

    def __init__(self, owner: BodyLimit):
        self.owner, self.size = owner, 0

    def grow_to(self, size: int) -> None:
        """Hold `size` bytes in all, or raise a 503 _Refusal saying why not."""
        if size <= self.size:
            return
        budget, held = self.owner.budget(), self.owner.held
        if budget and held + size - self.size > budget:
            raise _Refusal(
                503,
                "body",
                f"the server holds {held} bytes of request bodies (max_buffered_body_bytes={budget}); retry",
            )
        self.owner.held += size - self.size
        self.size = size

    def release(self) -> None:
        """Give the bytes back: the request was answered, refused, or its client left."""
        self.owner.held -= self.size
        self.size = 0


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then waits on the client (for its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, field: str, message: str) -> None:
    status, body = error_style(scope["path"])(status, field, message)
    # Closing the connection tells the client to stop sending; the unread rest is dropped by the server.
    headers = {"connection": "close"}
    if status == 503:
        headers["retry-after"] = str(RETRY_AFTER_S)
    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """The middlewares Serve's HTTP proxy applies (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH points here)."""
    return [
        Middleware(
            BodyLimit,
            max_body_bytes=int(os.environ.get(PROXY_LIMIT_ENV, MAX_BODY_BYTES)),
            max_buffered_bytes=int(os.environ.get(PROXY_BUFFERED_ENV, MAX_BUFFERED_BODY_BYTES)),
        )
    ]


def guard_the_proxy(max_body_bytes: int, max_buffered_bytes: int) -> None:
    """Have the Serve proxy of a Ray started by this process enforce the app's body limits (set before Ray starts)."""
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
    os.environ.setdefault(PROXY_LIMIT_ENV, str(max_body_bytes))
    os.environ.setdefault(PROXY_BUFFERED_ENV, str(max_buffered_bytes))
