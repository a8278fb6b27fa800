"""Operator metrics of the replicas, through Ray Serve's metrics API: exported wherever Ray exports Prometheus metrics
(names get Ray's `ray_` prefix; Serve adds the deployment, replica and application tags)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routes import MODELS_ROUTE, RANK_ROUTES

ROUTES = (*RANK_ROUTES, MODELS_ROUTE, "/health")
REQUESTS_PER_CALL_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]
SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
SIZES = (8, 64, 512)  # request sizes (pairs) the time to the last score is told apart by


def size_label(pairs: int) -> str:
    """The size class of a request of `pairs` pairs: '1-8', '9-64', '65-512' or '513+'."""
    low = 1
    for high in SIZES:
        if pairs <= high:
            return f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def route_label(path: str) -> str:
    """The route a path is served by, or 'other': labels stay few whatever paths clients send."""
    return next((r for r in sorted(ROUTES, key=len, reverse=True) if path.endswith(r)), "other")


class GatewayMetrics:
    """The gateway's request counter; made inside the gateway replica, where Ray's metrics exporter runs."""

    def __init__(self):
        from ray.serve.metrics import Counter

        self.requests = Counter(
            "rerank_requests",
            description="HTTP requests answered, by route, status and the model that took them ('' before one did)",
            tag_keys=("route", "status", "model"),
        )
        self.image_refusals = Counter(
            "rerank_image_refusals",
            description="images refused before model work, by model and reason (bytes, pixels, format, url, ...)",
            tag_keys=("model", "reason"),
        )


class ReplicaMetrics:
    """The model replica's counters and histograms, each tagged with the served model's name; made inside the
    replica, where Ray's metrics exporter runs."""

    def __init__(self, model: str):
        from ray.serve.metrics import Counter, Histogram

        def tagged(metric_type, name: str, tag_keys: tuple[str, ...] = (), **options):
            metric = metric_type(name, tag_keys=("model", *tag_keys), **options)
            metric.set_default_tags({"model": model})
            return metric

        self.pairs = tagged(Counter, "rerank_pairs_scored", description="(query, document) pairs scored")
        self.tokens = tagged(
            Counter, "rerank_tokens_scored", description="tokens of the scored pairs, after truncation"
        )
        self.truncated = tagged(
            Counter, "rerank_pairs_truncated", description="pairs whose document was cut to max_length"
        )
        self.requests_per_call = tagged(
            Histogram,
            "rerank_requests_per_model_call",
            boundaries=REQUESTS_PER_CALL_BUCKETS,
            description="requests with pairs in one model call",
        )
        self.call_seconds = tagged(
            Histogram,
            "rerank_model_call_seconds",
            boundaries=SECONDS_BUCKETS,
            description="seconds one model call takes",
        )
        self.queue_seconds = tagged(
            Histogram,
            "rerank_queue_wait_seconds",
            boundaries=SECONDS_BUCKETS,
            description="seconds from admission to a request's first pairs in a model call",
        )
        self.request_seconds = tagged(
            Histogram,
            "rerank_request_seconds",
            ("size",),
            boundaries=SECONDS_BUCKETS,
            description="seconds from admission to a request's last score, by request size (pairs)",
        )
        self.pairs_dropped = tagged(
            Counter,
            "rerank_pairs_dropped",
            ("reason",),
            description="queued pairs never scored: their request was cancelled or passed its deadline",
        )
        self.calls_split = tagged(
            Counter,
            "rerank_model_calls_split",
            description="model calls split in halves because the device's memory refused them whole",
        )
        self.device_memory_errors = tagged(
            Counter,
            "rerank_device_memory_errors",
            description="requests answered 503 because a call did not fit the device's memory even one row at a time",
        )
        self.image_budget_waits = tagged(
            Counter,
            "rerank_image_budget_waits",
            description="requests that waited for the replica's image budget (max_image_tokens_in_flight)",
        )
        self.cache_hits = tagged(Counter, "rerank_score_cache_hits", description="pairs answered from the score cache")
        self.cache_misses = tagged(
            Counter, "rerank_score_cache_misses", description="pairs the score cache did not hold"
        )

    def record(self, name: str, value: float, tags: dict[str, str]) -> None:
        """Add `value` to counter `name`, or observe it in histogram `name`."""
        metric = getattr(self, name)
        if hasattr(metric, "observe"):
            metric.observe(value, tags=tags or None)
        elif value:
            metric.inc(value, tags=tags or None)


class CountRequests:
    """ASGI middleware: counts every answered request by route and status in `metrics()` (None until loaded)."""

    def __init__(self, app: ASGIApp, metrics):
        self.app, self._metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self._metrics() if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return

        state = scope.setdefault("state", {})  # the routes' request.state: the gateway names the model there

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                tags = {"route": route_label(scope["path"]), "status": str(message["status"])}
                metrics.requests.inc(tags={**tags, "model": state.get("model", "")})
            await send(message)

        await self.app(scope, receive, counted)
