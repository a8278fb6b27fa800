"""Joining or starting Ray, and checking the cluster can satisfy a resource request (shared by serve and pipelines)."""

from __future__ import annotations

import logging
import os

import ray

from rerank_core.errors import ConfigError

log = logging.getLogger(__name__)


def ensure_ray(**init_kwargs) -> None:
    """Connect to RAY_ADDRESS if set, else start a local Ray with this machine's CPUs; no-op if already up."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    log.info("connecting to Ray at %s", address if address else "a new local instance")
    ray.init(address=address, **init_kwargs)


def check_gpus(gpus_per_actor: float, actors: int, what: str) -> None:
    """Fail clearly instead of hanging forever when the cluster has fewer GPUs than asked for."""
    if gpus_per_actor <= 0:
        return
    available = ray.cluster_resources().get("GPU", 0.0)
    needed = gpus_per_actor * max(actors, 1)
    if available < gpus_per_actor:
        raise ConfigError(
            f"{what}: asks for num_gpus={gpus_per_actor} per actor but the Ray cluster has {available:g} GPUs; "
            "set num_gpus: 0 to run on CPU, or connect to a GPU cluster (RAY_ADDRESS)"
        )
    if available < needed:
        log.warning("%s: %g GPUs asked for in all, cluster has %g; fewer actors will run", what, needed, available)
