"""`rerank serve`: validate a Serve config file, deploy it on local (or RAY_ADDRESS) Ray, run until signalled."""

from __future__ import annotations

import copy
import logging
import signal
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from ray import serve

from rerank_core.errors import ConfigError
from rerank_core.integrations.ray import check_gpus, ensure_ray, fit_actor

from .app import build_app
from .body_limit import guard_the_proxy
from .config import DEPLOYMENT, ServeAppConfig, ServedModel, default_serve_config

log = logging.getLogger(__name__)
DEFAULT_MODEL = "Qwen/Qwen3-Reranker-0.6B"


def load_serve_config(path: str | Path | None, *, models: list[str] | None = None) -> dict[str, Any]:
    """Read a Serve config file (None: the default config), validate it with Serve's schema and our app args;
    apply a model override (`models`: one replaces the config's model, several replace it by a list of them, each
    with the config's model options and Reranker deployment options, the first the default)."""
    from ray.serve.schema import ServeDeploySchema

    if path is None:
        config, path = default_serve_config(DEFAULT_MODEL), Path("<default config>")
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such Serve config file")
        config = yaml.safe_load(path.read_text()) or {}
    try:
        ServeDeploySchema.parse_obj(config)
    except Exception as exc:  # Serve's schema raises pydantic errors of its own vendored version
        raise ConfigError(f"{path}: not a valid Serve config: {exc}") from None
    apps = config.get("applications") or []
    if len(apps) != 1:
        raise ConfigError(f"{path}: applications: expected exactly one application, found {len(apps)}")
    args = apps[0].setdefault("args", {})
    if models:
        if "models" in args:
            raise ConfigError(f"{path}: its application lists `models`; name them there, not with --model")
        override_models(apps[0], models)
    ServeAppConfig.from_dict(args, source=f"{path}: applications[0].args")
    return config


def override_models(application: dict[str, Any], models: list[str]) -> None:
    """Serve `models` instead of the application's one model: each with its model options, the first the default;
    several each get a deployment of their own with the options of its `Reranker` deployment."""
    args = application["args"]
    base = args.pop("model", {})
    if len(models) == 1:
        args["model"] = {**base, "model": models[0]}
        return
    args["models"] = [{"model": {**base, "model": model}} for model in models]
    named = ServeAppConfig.from_dict(args, source="--model").served()
    options = deployment_options(application, DEPLOYMENT["name"])
    kept = [d for d in application.get("deployments", []) if d.get("name") != DEPLOYMENT["name"]]
    application["deployments"] = kept + [{"name": served.deployment, **copy.deepcopy(options)} for served in named]


def deployment_options(application: dict[str, Any], name: str) -> dict[str, Any]:
    """The options a Serve config's application gives deployment `name` (a copy, without the name)."""
    options = next((d for d in application.get("deployments", []) if d.get("name") == name), {})
    return copy.deepcopy({k: v for k, v in options.items() if k != "name"})


def fit_to_cluster(application: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model's deployment options, by deployment name, with what the config left unset fitted to this cluster
    (the models sharing its CPUs); `application`'s model args get the ONNX Runtime thread count that goes with it."""
    args = application["args"]
    if "model" in args:
        models = [(DEPLOYMENT["name"], args["model"])]
    else:
        models = [(ServedModel.from_dict(entry).named().deployment, entry["model"]) for entry in args["models"]]
    fitted = {}
    for deployment, model in models:
        options = deployment_options(application, deployment)
        actor = options.setdefault("ray_actor_options", {})
        shape = fit_actor(actor.get("num_cpus"), actor.get("num_gpus"), share=len(models))
        check_gpus(shape.num_gpus, 1, f"deployments[{deployment}].ray_actor_options")
        actor.update(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus)
        if shape.threads and model.get("intra_op_threads") is None:
            model["intra_op_threads"] = shape.threads
        if "autoscaling_config" in options:
            options["autoscaling_config"].setdefault("max_replicas", shape.fits)
        log.info("%s replicas (%s): %s", deployment, model["model"], shape)
        fitted[deployment] = options
    return fitted


def start_ray(config: dict[str, Any]) -> None:
    """Join or start Ray; a Ray started here gets its Serve proxy guarded by the app's body limit."""
    args = ServeAppConfig.from_dict(config["applications"][0]["args"])
    guard_the_proxy(args.max_body_bytes, args.max_buffered_body_bytes)
    ensure_ray()


def deploy(config: dict[str, Any], *, host: str | None = None, port: int | None = None) -> str:
    """Start Serve's HTTP proxy and deploy the config's application; return the base URL once /health answers."""
    start_ray(config)
    (application,) = copy.deepcopy(config["applications"])
    http = config.get("http_options") or {}
    host = host or http.get("host", "127.0.0.1")
    port = port or int(http.get("port", 8000))
    options = fit_to_cluster(application)
    serve.start(proxy_location=config.get("proxy_location", "HeadOnly"), http_options={"host": host, "port": port})
    route = application.get("route_prefix", "/")
    serve.run(
        build_app(
            application["args"],
            gateway_options=deployment_options(application, "Gateway"),
            options_by_deployment=options,
        ),
        name=application.get("name", "rerank"),
        route_prefix=route,
        blocking=False,
    )
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}{route.rstrip('/')}"
    wait_healthy(url)
    return url


def wait_healthy(url: str, timeout_s: float = 300.0) -> None:
    """Poll GET {url}/health until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer within {timeout_s:.0f}s")
        time.sleep(0.5)


def run_foreground(
    config_path: str | None = None, models: list[str] | None = None, host: str | None = None, port: int | None = None
) -> int:
    """Deploy, print the URL, and block until Ctrl-C or SIGTERM; then shut Serve down cleanly."""
    config = load_serve_config(config_path, models=models)
    start_ray(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    url = deploy(config, host=host, port=port)
    print(f"rerank endpoint ready at {url}  (POST {url}/v1/rerank, docs at {url}/docs; Ctrl-C to stop)", flush=True)
    stop.wait()
    log.info("shutting down")
    serve.shutdown()
    import ray

    ray.shutdown()
    return 0
