"""The Serve application's config (`args` in a Serve config file) and every default of the deployment, in one place."""

from __future__ import annotations

import re
from pathlib import Path
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
    """What one request may send as images (models that take them), and what a replica holds decoded at once; each
    image's own caps (bytes, header pixels, which URLs) are the model's `images` option."""

    max_images_per_request: int = Field(default=40, ge=0, description="images per request (DashScope's 40)")
    max_image_bytes_per_request: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="encoded image bytes per request, base64 decoded (the body cap first)",
    )
    max_image_tokens_in_flight: int = Field(
        default=65_536,
        ge=1,
        description="image tokens a replica's requests hold decoded at once (~3 KiB of resized pixels each, read "
        "from the headers before decoding); later requests wait their turn, one larger than this runs alone",
    )


def model_name(model: str) -> str:
    """What requests name a model by when its config names it not: a folder by its own name, anything else (a Hub
    id, builtin:NAME, a DashScope model) as given."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def deployment_name(name: str) -> str:
    """The Reranker deployment of the model named `name`: `Reranker-` and the name, characters other than letters,
    digits, `.`, `_` and `-` made `-`."""
    return "Reranker-" + re.sub(r"[^A-Za-z0-9._-]", "-", name)


class ServedModel(StrictModel):
    """One model of the app, scored by a Reranker deployment of its own (replicas, autoscaling, resources)."""

    model: ModelConfig
    name: str | None = Field(
        default=None,
        min_length=1,
        description="what a request's `model` names it by; unset: a folder's name, else the model as given",
    )
    aliases: list[str] = Field(default_factory=list, description="other names requests may give it")
    deployment: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^[^#]+$",
        description="its deployment's name, for the Serve config's `deployments` list; unset: Reranker-<name>",
    )
    max_tokens_per_request: int | None = Field(
        default=None, ge=1, description="this model's per-request token limit; unset: the app's"
    )

    def named(self) -> ServedModel:
        """This entry with its name and deployment filled in."""
        name = self.name or model_name(self.model.model)
        return self.model_copy(update={"name": name, "deployment": self.deployment or deployment_name(name)})


class ServeAppConfig(StrictModel):
    """`args` of the Serve application (`serve.app:build_app`): one model (`model`), or several (`models`), each
    with a deployment of its own, routed by the request's `model`."""

    model: ModelConfig | None = Field(default=None, description="the one model served (deployment `Reranker`)")
    models: list[ServedModel] = Field(
        default_factory=list, description="several models, each its own deployment; instead of `model`"
    )
    default_model: str | None = Field(
        default=None, description="the name or alias of the model for requests naming none; unset: the first"
    )
    strict_model_names: bool = Field(
        default=False,
        description="a request naming no served model gets a 404 listing them; off: it goes to the default model",
    )
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
    def _models_named_once(self) -> ServeAppConfig:
        if (self.model is None) == (not self.models):
            raise ValueError("give exactly one of `model` (one model) and `models` (a list of them)")
        seen: dict[str, int] = {}
        served = self.served()
        for i, model in enumerate(served):
            for name in [model.name, *model.aliases]:
                if seen.setdefault(name, i) != i:
                    raise ValueError(f"models[{i}]: the name {name!r} is already models[{seen[name]}]'s")
        deployments = [model.deployment for model in served]
        if len(set(deployments)) != len(deployments):
            raise ValueError(f"models: two models share a deployment name ({deployments})")
        if self.default_model is not None and self.default_model not in seen:
            raise ValueError(
                f"default_model: {self.default_model!r} is none of the served models' names {sorted(seen)}"
            )
        return self

    def served(self) -> list[ServedModel]:
        """Every model served, named, the default first."""
        if self.model is not None:
            return [ServedModel(model=self.model, deployment=DEPLOYMENT["name"]).named()]
        named = [served.named() for served in self.models]
        first = next((s for s in named if self.default_model in (s.name, *s.aliases)), named[0])
        return [first, *(s for s in named if s is not first)]

    def resolved(self) -> dict[str, Any]:
        """These args with every model's name and deployment written out, so each process reading them (the
        gateway, every replica) agrees on the names without looking at its own file system."""
        args = self.model_dump(mode="json", exclude_unset=True, exclude={"model", "models", "default_model"})
        args["models"] = [served.model_dump(mode="json", exclude_unset=True) for served in self.served()]
        return args

    @model_validator(mode="after")
    def _one_body_fits_the_buffer(self) -> ServeAppConfig:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_body_bytes ({self.max_buffered_body_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}), or a request of the largest allowed body could never be taken"
            )
        return self

    def max_tokens(self, device: str, served: ServedModel) -> int:
        """The per-request token limit of `served` on a replica whose scorer runs on `device`."""
        limit = served.max_tokens_per_request or self.max_tokens_per_request
        return limit or MAX_TOKENS_PER_REQUEST.get(device, MAX_TOKENS_PER_REQUEST["cuda"])


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
