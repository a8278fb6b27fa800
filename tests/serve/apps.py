"""Serve apps the serve tests deploy beside the session's demo app, each under /NAME on its proxy, and their
replicas found by name."""

from ray import serve

from serve.app import build_app

# The package's two-model app (tests/serve/conftest.py: vl_url): its names and its image cap.
VL_NAME, TEXT_NAME = "qwen3-vl-reranker", "qwen3-reranker"
TEXT_ALIASES = ["qwen3-rerank", "gte-rerank-v2"]
MAX_IMAGES = 4
IMAGE_BUDGET = 20  # image tokens a replica holds at once: two 64 × 48 photos (6 tokens each) fit, four do not
TINY = {"model": "builtin:tiny-qwen3-reranker", "device": "cpu", "intra_op_threads": 1}
OPTIONS = {
    "num_replicas": 1,
    "max_ongoing_requests": 16,
    "max_queued_requests": 64,
    "ray_actor_options": {"num_cpus": 0.25},
    "health_check_period_s": 1,
    "graceful_shutdown_timeout_s": 1,
}


def deploy(name, model=None, options=None, env=None, args=None, by_deployment=None):
    """App `name` of `model` (or of `args`' models), every model deployment with small OPTIONS updated by `options`,
    then each by its `by_deployment` entry; `env` in the replicas' environment."""
    args = {**({"model": model} if model else {}), "max_documents": 64, **(args or {})}
    opts = {**OPTIONS, "ray_actor_options": dict(OPTIONS["ray_actor_options"])}
    if env:
        opts["ray_actor_options"]["runtime_env"] = {"env_vars": env}
    opts.update(options or {})
    opts = {key: value for key, value in opts.items() if value is not None}  # None: Serve's default
    app = build_app(args, opts, options_by_deployment=by_deployment)
    serve.run(app, name=name, route_prefix=f"/{name}", blocking=False)


def replicas(ray_cluster, app, deployment="Reranker"):
    """The actor names of deployment `deployment`'s live replicas in app `app`."""
    return {
        a["name"]
        for a in ray_cluster.util.list_named_actors(all_namespaces=True)
        if f"{app}#{deployment}#" in a["name"]
    }
