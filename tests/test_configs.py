"""Every shipped config is valid, and the cluster manifests stay in step with the local configs."""

import re
from pathlib import Path

import pytest
import yaml

from pipelines.config import OfflineConfig
from serve.config import ServeAppConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", ["serve.yaml", "demo/serve.yaml", "serve_models.yaml"])
def test_serve_configs_are_valid_serve_files_with_valid_args(path):
    from serve.launcher import load_serve_config

    config = load_serve_config(CONFIGS / path)
    app = config["applications"][0]
    assert app["import_path"] == "serve.app:build_app"
    deployments = {d["name"]: d for d in app["deployments"]}
    for served in ServeAppConfig.from_dict(app["args"]).served():  # every model's deployment is configured
        deployment = deployments[served.deployment]
        assert deployment["max_ongoing_requests"] >= deployment["user_config"]["max_batch_size"]
        assert "max_queued_requests" in deployment


@pytest.mark.parametrize("path", ["offline.yaml", "demo/offline.yaml", "demo/offline_images.yaml"])
def test_offline_configs_are_valid(path):
    OfflineConfig.from_yaml(CONFIGS / path)


def test_rayservice_serve_config_is_configs_serve_models_yaml():
    service = yaml.safe_load((CONFIGS / "kuberay/rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert served == yaml.safe_load((CONFIGS / "serve_models.yaml").read_text())
    assert len(ServeAppConfig.from_dict(served["applications"][0]["args"]).served()) == 2


def test_rayjob_runs_the_offline_config_on_gpu_workers():
    job = yaml.safe_load((CONFIGS / "kuberay/rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"] == "rerank offline --config configs/offline.yaml"
    (workers,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    offline = OfflineConfig.from_yaml(CONFIGS / "offline.yaml")
    assert (
        offline.compute.num_gpus > 0 and workers["replicas"] / offline.compute.num_gpus >= offline.compute.concurrency
    )


def _container_env(group: dict) -> dict[str, str]:
    """The environment of a KubeRay group's first container, by name."""
    return {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}


def test_rayservice_guards_every_proxy_with_the_apps_body_limits():
    service = yaml.safe_load((CONFIGS / "kuberay/rayservice.yaml").read_text())
    args = ServeAppConfig.from_dict(yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"])
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        env = _container_env(group)
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "serve.body_limit:proxy_middlewares"
        assert int(env["QWEN_RERANK_PROXY_MAX_BODY_BYTES"]) == args.max_body_bytes
        assert int(env["QWEN_RERANK_PROXY_MAX_BUFFERED_BYTES"]) == args.max_buffered_body_bytes


def test_rayservice_worker_pods_drain_within_their_grace_period():
    """A removed worker pod's drain must end before Kubernetes SIGKILLs it, and outlast the replicas' graceful shutdown
    (Serve stops a replica on a draining node at the drain's end minus that, replaced or not)."""
    from ray.serve._private.constants import DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S

    service = yaml.safe_load((CONFIGS / "kuberay/rayservice.yaml").read_text())
    deployments = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["deployments"]
    replica_shutdown_s = max(
        d.get("graceful_shutdown_timeout_s", DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S) for d in deployments
    )
    for group in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        drain_s = float(_container_env(group)["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"])
        assert replica_shutdown_s < drain_s < group["template"]["spec"]["terminationGracePeriodSeconds"]


def test_a_buffer_budget_below_one_body_is_refused_naming_both_limits():
    from rerank_core import ConfigError

    with pytest.raises(ConfigError, match="max_buffered_body_bytes .*max_body_bytes"):
        ServeAppConfig.from_dict({"model": {"model": "m"}, "max_body_bytes": 1 << 20, "max_buffered_body_bytes": 65536})


def test_a_model_config_written_for_earlier_versions_still_loads():
    """`max_batch_size` was the name of `max_rows_per_call` (rows per model call) before 0.2."""
    from rerank_core.config import LocalOptions, ModelConfig

    old = ModelConfig.from_dict({"model": "m", "max_batch_size": 7, "token_budget": 512})
    assert old.max_rows_per_call == 7 and LocalOptions.part_of(old).max_rows_per_call == 7
    assert ModelConfig.from_dict({"model": "m", "max_rows_per_call": 9}).max_rows_per_call == 9


def test_local_options_are_one_object_from_yaml_to_the_backend():
    """Every LocalOptions field is a model-config key, and a typo fails naming the key."""
    from rerank_core import ConfigError
    from rerank_core.config import LocalOptions, ModelConfig

    assert set(LocalOptions.model_fields) <= set(ModelConfig.model_fields)
    with pytest.raises(ConfigError, match="share_prefx"):
        ModelConfig.from_dict({"model": "m", "share_prefx": False})
    with pytest.raises(ConfigError, match="share_prefx"):
        LocalOptions.from_kwargs(share_prefx=False)


def test_the_dockerfile_and_the_manifests_name_the_package_version():
    root = CONFIGS.parent
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M).group(1)
    images = set()
    for manifest in (CONFIGS / "kuberay").glob("*.yaml"):
        images |= set(re.findall(r"image: (\S+)", manifest.read_text()))
    assert images == {f"ghcr.io/your-org/qwen-rerank:{version}"}
    dockerfile = (root / "Dockerfile").read_text()
    assert f"-t ghcr.io/your-org/qwen-rerank:{version} ." in dockerfile
    assert "--require-hashes -r requirements.lock" in dockerfile  # the locked set `make test` installs
    lock_python = re.search(r"--python-version (\d+)\.(\d+)", (root / "requirements.lock").read_text()).groups()
    base_python = re.search(r"ARG BASE=rayproject/ray:([\d.]+)-py(\d)(\d+)", dockerfile).groups()
    assert base_python[1:] == lock_python
    ray = re.search(r"^ray==([\d.]+)", (root / "requirements.lock").read_text(), re.M).group(1)
    assert base_python[0] == ray  # the base image's Ray is the locked one


def test_several_models_are_named_once_each_with_a_deployment_and_a_default():
    from rerank_core import ConfigError

    folder = CONFIGS / "demo"  # a folder: named by its name
    args = {"models": [{"model": {"model": "Qwen/Qwen3-Reranker-4B"}}, {"model": {"model": str(folder)}}]}
    served = ServeAppConfig.from_dict({**args, "default_model": "demo"}).served()
    assert [(s.name, s.deployment) for s in served] == [
        ("demo", "Reranker-demo"),  # the default first
        ("Qwen/Qwen3-Reranker-4B", "Reranker-Qwen-Qwen3-Reranker-4B"),
    ]
    resolved = ServeAppConfig.from_dict(args).resolved()  # what every replica reads: names written out
    assert [m["name"] for m in resolved["models"]] == ["Qwen/Qwen3-Reranker-4B", "demo"]
    taken = {"models": [{"model": {"model": "a"}}, {"model": {"model": "b"}, "aliases": ["a"]}]}
    for bad, message in [
        (taken, "the name 'a' is already models\\[0\\]'s"),
        ({**args, "default_model": "nope"}, "default_model: 'nope' is none of"),
        ({**args, "model": {"model": "c"}}, "exactly one of `model`"),
        ({}, "exactly one of `model`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ServeAppConfig.from_dict(bad)


def test_serve_with_several_models_gives_each_a_deployment_with_the_configs_options():
    from rerank_core import ConfigError
    from serve.launcher import load_serve_config

    config = load_serve_config(CONFIGS / "serve.yaml", models=["Qwen/Qwen3-Reranker-0.6B", "Qwen/Qwen3-Reranker-8B"])
    app = config["applications"][0]
    assert [m["model"]["model"] for m in app["args"]["models"]] == [
        "Qwen/Qwen3-Reranker-0.6B",
        "Qwen/Qwen3-Reranker-8B",
    ]
    assert all(m["model"]["dtype"] == "f16" for m in app["args"]["models"])  # the config's model options, each
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {"Gateway", "Reranker-Qwen-Qwen3-Reranker-0.6B", "Reranker-Qwen-Qwen3-Reranker-8B"}
    assert deployments["Reranker-Qwen-Qwen3-Reranker-8B"]["max_queued_requests"] == 256
    default = load_serve_config(None, models=["builtin:a", "builtin:b"])["applications"][0]
    assert [d["name"] for d in default["deployments"]] == ["Reranker-builtin-a", "Reranker-builtin-b"]
    with pytest.raises(ConfigError, match="lists `models`"):
        load_serve_config(CONFIGS / "serve_models.yaml", models=["builtin:a"])
