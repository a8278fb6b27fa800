"""Ray helpers both apps share (Serve and the offline job): join or start Ray, fit a model actor to the cluster.

Ray is imported when a helper runs, never at import: the library stays importable without it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import ConfigError

log = logging.getLogger(__name__)


def ensure_ray(**init_kwargs) -> None:
    """Connect to RAY_ADDRESS if set (`auto`: a cluster `ray start` began here), else start a local Ray; no-op if up."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or "local"
    log.info("connecting to Ray at %s", "a new local instance" if address == "local" else address)
    # A new local instance turns token authentication on when RAY_AUTH_MODE is unset, and warns that it did: a
    # warning about the secure default, which a newcomer reads as something gone wrong. Ray's other lines stay.
    auth_notes = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth_notes.level
    if address == "local":
        auth_notes.setLevel(logging.ERROR)
    try:
        ray.init(address=address, **init_kwargs)
    finally:
        auth_notes.setLevel(level)


def check_gpus(gpus_per_actor: float, actors: int, what: str) -> None:
    """Fail clearly instead of hanging forever when the cluster has fewer GPUs than asked for."""
    if gpus_per_actor <= 0:
        return
    import ray

    available = ray.cluster_resources().get("GPU", 0.0)
    needed = gpus_per_actor * max(actors, 1)
    if available < gpus_per_actor:
        raise ConfigError(
            f"{what}: asks for num_gpus={gpus_per_actor} per actor but the Ray cluster has {available:g} GPUs; "
            "set num_gpus: 0 to run on CPU, or connect to a GPU cluster (RAY_ADDRESS)"
        )
    if available < needed:
        log.warning("%s: %g GPUs asked for in all, cluster has %g; fewer actors will run", what, needed, available)


# A model actor on a GPU takes half of it: the 0.6B model needs ~1.5 GB in f16, so two share a card and overlap
# their host-side work. On CPUs one actor per node uses the node's cores as ONNX Runtime threads (up to this many).
GPU_SHARE = 0.5
MAX_CPU_THREADS = 8


@dataclass(frozen=True)
class ActorShape:
    """What one model actor (a Serve replica or a Ray Data actor) reserves, and how many of them fit the cluster."""

    num_cpus: float
    num_gpus: float
    threads: int | None  # ONNX Runtime intra-op threads; None: its own default (GPU actors)
    fits: int

    def __str__(self) -> str:
        where = f"num_gpus={self.num_gpus:g}" if self.num_gpus else f"CPU only, {self.threads} ONNX Runtime threads"
        return f"num_cpus={self.num_cpus:g}, {where} ({self.fits} such actors fit the cluster)"


def fit_actor(num_cpus: float | None, num_gpus: float | None, *, spare_cpus: float = 0.0, share: int = 1) -> ActorShape:
    """Fill in what a config left unset so it runs on this cluster: GPUs only where it has them, else CPU threads.

    `spare_cpus` stay unreserved on a node for other tasks (Ray Data's reads and writes); `share` kinds of actor
    (the models of one Serve app) reserve a node's CPUs together, each using all its cores while the others idle.
    """
    import ray

    resources = ray.cluster_resources()
    total_gpus, total_cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    if num_gpus is None:
        num_gpus = GPU_SHARE if total_gpus > 0 else 0.0
    if num_gpus > 0:
        cpus = 1.0 if num_cpus is None else num_cpus
        return ActorShape(cpus, num_gpus, None, max(1, int(total_gpus // num_gpus)))
    node_cpus = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=total_cpus)
    threads = max(1, int(min(node_cpus, MAX_CPU_THREADS)))
    cpus = max(0.5 / share, (threads - spare_cpus) / share) if num_cpus is None else num_cpus
    return ActorShape(cpus, 0.0, threads, max(1, int(total_cpus // threads)))
