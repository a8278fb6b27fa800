"""The Serve application's config (`args` in a Serve config file) and every default of the deployment, in one place."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from rerank_core.config import ModelConfig, StrictModel

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BUFFERED_BODY_BYTES = 32 * MAX_BODY_BYTES  # bodies one process (the proxy, a gateway) holds at once
RETRY_AFTER_S = 1  # what a 503 tells clients to wait before trying again
# A request's work bound by default: ~30 s of a 2-core CPU at the 0.6B shape (int8), well under a second on a GPU.
MAX_TOKENS_PER_REQUEST = {"cpu": 32_768, "cuda": 262_144, "remote": 262_144}
# Deployment options the app is declared with and the default config runs; a Serve config file may override each.
DEPLOYMENT = {
    "name": "Reranker",
    "max_ongoing_requests": 64,  # ≥ user_config.max_batch_size, or calls never fill
    "max_queued_requests": 256,  # beyond this, clients get 503 at once instead of waiting
    "health_check_period_s": 10,
}
AUTOSCALING = {"min_replicas": 1, "target_ongoing_requests": 16}
HEAD_NODE = "node:__internal_head__"  # a resource only Ray's head node has
# The HTTP gateway in front of the Reranker replicas: it only parses and forwards, so it needs no CPU of its own; on the
# head, beside the proxy clients reach, so a lost worker node never takes a request's gateway with it.
GATEWAY = {
    "name": "Gateway",
    "num_replicas": 1,
    "max_ongoing_requests": 1024,  # the Reranker's max_queued_requests bounds the work; this only bounds the sockets
    "health_check_period_s": 10,
    "ray_actor_options": {"num_cpus": 0, "resources": {HEAD_NODE: 0.001}},
}
REPLICA_LOSS_RETRIES = 2  # a request whose replica dies is asked again of a live one this many times


SCORE_CACHE_BYTES = 16 * 1024 * 1024  # ≈ 60,000 pairs' scores


class BatchConfig(StrictModel):
    """How a replica's scheduler fills model calls; live-updatable through Serve's `user_config`."""

    max_batch_size: int = Field(default=32, ge=1, description="requests with pairs in one model call, at most")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, le=10, description="wait for more requests before the first call after an idle spell"
    )
    call_target_s: float = Field(
        default=0.03,
        ge=0,
        description="a fast model's call holds more pairs than its token budget, up to about this long; a short "
        "call (see interactive_window_s) about this long: the wait of a request arriving mid-call",
    )
    interactive_window_s: float = Field(
        default=10.0,
        ge=0,
        description="for this long after a small request arrives, a model slower than call_target_s per call "
        "puts bulk work in short calls (long pairs computed ahead in pieces, or on a GPU graph calls of whole pairs "
        "that take about call_target_s), so the next one waits little; 0: never",
    )
    aging_s: float = Field(
        default=10.0,
        gt=0,
        description="a request's remaining work counts as 1/(1 + s/aging_s) after s seconds without a call: "
        "bulk requests are never starved by a stream of small ones",
    )


class ImageLimits(StrictModel):
    """What one request may send as images (models that take them); each image's own caps (bytes, header pixels,
    which URLs) are the model's `images` option."""

    max_images_per_request: int = Field(default=40, ge=0, description="images per request (DashScope's 40)")
    max_image_bytes_per_request: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="encoded image bytes per request, base64 decoded (the body cap first)",
    )


class ServeAppConfig(StrictModel):
    """`args` of the Serve application (`serve.app:build_app`)."""

    model: ModelConfig
    max_documents: int = Field(default=1000, ge=1, description="documents per request")
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, description="enforced while the body arrives")
    max_buffered_body_bytes: int = Field(
        default=MAX_BUFFERED_BODY_BYTES,
        ge=1024,
        description="bytes of request bodies the proxy (and each gateway) holds at once; past it, 503 and retry",
    )
    max_tokens_per_request: int | None = Field(
        default=None, ge=1, description=f"tokens of all pairs after truncation; None: {MAX_TOKENS_PER_REQUEST}"
    )
    score_cache_bytes: int = Field(
        default=SCORE_CACHE_BYTES, ge=0, description="scores of recent pairs answered again without the model; 0: off"
    )
    request_timeout_s: float | None = Field(
        default=None, gt=0, description="answer 504 and drop the work of a request not scored by then; None: off"
    )
    api_key_env: str | None = Field(default=None, description="env var holding the Bearer key; unset = no auth")
    batch: BatchConfig = BatchConfig()
    images: ImageLimits = ImageLimits()

    @model_validator(mode="after")
    def _one_body_fits_the_buffer(self) -> ServeAppConfig:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_body_bytes ({self.max_buffered_body_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}), or a request of the largest allowed body could never be taken"
            )
        return self

    def max_tokens(self, device: str) -> int:
        """The per-request token limit on a replica whose scorer runs on `device`."""
        return self.max_tokens_per_request or MAX_TOKENS_PER_REQUEST.get(device, MAX_TOKENS_PER_REQUEST["cuda"])


def default_serve_config(model: str) -> dict[str, Any]:
    """What `rerank serve --model M` runs without --config: loopback, resources fitted to the cluster at deploy."""
    deployment = {**DEPLOYMENT, "autoscaling_config": dict(AUTOSCALING), "user_config": BatchConfig().model_dump()}
    application = {
        "name": "rerank",
        "route_prefix": "/",
        "import_path": "serve.app:build_app",
        "args": {"model": {"model": model}},
        "deployments": [deployment],
    }
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [application],
    }
