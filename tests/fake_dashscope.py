"""A fake DashScope TextReRank service: a real HTTP server on 127.0.0.1 speaking the documented protocol."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTE = "/api/v1/services/rerank/text-rerank/text-rerank"
API_KEY = "sk-fake-0123456789abcdef"


# qwen3-vl-rerank's documented caps: documents per request, image documents among them.
VL_MODEL, VL_DOCUMENTS, VL_IMAGES = "qwen3-vl-rerank", 100, 40


def words(side: str | dict) -> set[str]:
    """What the fake compares: a text's words; an image is one word, a digest of the URL or data URI it was sent as."""
    if isinstance(side, str):
        return set(side.lower().split())
    if "text" in side:
        return set(side["text"].lower().split())
    return {"image:" + hashlib.sha256(side["image"].encode()).hexdigest()[:16]}


def overlap_score(query: str | dict, document: str | dict) -> float:
    """The fake service's relevance: word overlap (Jaccard), deterministic, in 0..1."""
    q, d = words(query), words(document)
    return len(q & d) / len(q | d) if q | d else 0.0


def bad_image(side: str | dict) -> str | None:
    """Why the service would refuse a side's image (not an http(s) URL nor a base64 data URI of an image), or None."""
    if isinstance(side, str) or "image" not in side:
        return None
    value = side["image"]
    if value.startswith(("http://", "https://")):
        return None
    header, _, data = value.partition(",")
    if not (header.startswith("data:image/") and header.endswith(";base64")):
        return f"unsupported image value {value[:30]!r}"
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        return "image data is not base64"
    return None


class FakeDashScope:
    """Serves TextReRank; `fail(status, code, times, retry_after)` queues errors; `delay_s` slows every answer."""

    def __init__(self):
        self.requests: list[dict] = []
        self.failures: deque = deque()
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """What DASHSCOPE_HTTP_BASE_URL would be."""
        return f"http://127.0.0.1:{self.server.server_port}/api/v1"

    def fail(self, status: int, code: str, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests with this error."""
        for _ in range(times):
            self.failures.append((status, code, retry_after))

    def reset(self) -> None:
        """Forget recorded requests and queued failures."""
        self.requests.clear()
        self.failures.clear()
        self.delay_s = 0.0

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                request_id = uuid.uuid4().hex
                with fake._lock:
                    fake.requests.append({"body": body, "headers": dict(self.headers)})
                    failure = fake.failures.popleft() if fake.failures else None
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if self.path != ROUTE:
                    return self._reply(404, {"code": "NotFound", "message": self.path, "request_id": request_id})
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self._reply(
                        401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": request_id}
                    )
                if failure:
                    status, code, retry_after = failure
                    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                    return self._reply(
                        status, {"code": code, "message": f"{code} (fake)", "request_id": request_id}, headers
                    )
                documents, query = body["input"]["documents"], body["input"]["query"]
                images = sum(isinstance(d, dict) and "image" in d for d in documents)
                if body["model"] == VL_MODEL:
                    wrong = next(filter(None, map(bad_image, [query, *documents])), None)
                    if len(documents) > VL_DOCUMENTS or images > VL_IMAGES:
                        wrong = f"{len(documents)} documents, {images} images: at most {VL_DOCUMENTS}, {VL_IMAGES}"
                elif images or not isinstance(query, str):
                    wrong = f"{body['model']} takes text only"
                else:
                    wrong = "too many documents" if len(documents) > 500 else None
                if wrong:
                    return self._reply(400, {"code": "InvalidParameter", "message": wrong, "request_id": request_id})
                scored = sorted(((overlap_score(query, d), i) for i, d in enumerate(documents)), key=lambda x: -x[0])
                top_n = body.get("parameters", {}).get("top_n") or len(documents)
                results = [{"index": i, "relevance_score": s} for s, i in scored[:top_n]]
                tokens = sum(len(words(d)) for d in documents) + len(words(query)) + 1_000 * images
                self._reply(
                    200, {"output": {"results": results}, "usage": {"total_tokens": tokens}, "request_id": request_id}
                )

        return Handler

    def __enter__(self) -> FakeDashScope:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
