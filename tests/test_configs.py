"""Every shipped config is valid, and the cluster manifests stay in step with the local configs."""

from pathlib import Path

import pytest
import yaml

from rerank_core.config import OfflineConfig, ServeAppConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", ["serve.yaml", "demo/serve.yaml"])
def test_serve_configs_are_valid_serve_files_with_valid_args(path):
    from serve.launcher import load_serve_config

    config = load_serve_config(CONFIGS / path)
    app = config["applications"][0]
    assert app["import_path"] == "serve.app:build_app"
    deployment = app["deployments"][0]
    assert deployment["max_ongoing_requests"] >= deployment["user_config"]["max_batch_size"]
    assert "max_queued_requests" in deployment
    ServeAppConfig.from_dict(app["args"])


@pytest.mark.parametrize("path", ["offline.yaml", "demo/offline.yaml"])
def test_offline_configs_are_valid(path):
    OfflineConfig.from_yaml(CONFIGS / path)


def test_rayservice_serve_config_is_configs_serve_yaml():
    service = yaml.safe_load((CONFIGS / "kuberay/rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load((CONFIGS / "serve.yaml").read_text())


def test_rayjob_runs_the_offline_config_on_gpu_workers():
    job = yaml.safe_load((CONFIGS / "kuberay/rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"] == "rerank offline --config configs/offline.yaml"
    (workers,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    offline = OfflineConfig.from_yaml(CONFIGS / "offline.yaml")
    assert offline.compute.num_gpus > 0 and workers["replicas"] / offline.compute.num_gpus >= offline.compute.concurrency


def test_rayservice_guards_every_proxy_with_the_apps_body_limit():
    service = yaml.safe_load((CONFIGS / "kuberay/rayservice.yaml").read_text())
    limit = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]["max_body_bytes"]
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        env = {e["name"]: e["value"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "serve.body_limit:proxy_middlewares"
        assert int(env["QWEN_RERANK_PROXY_MAX_BODY_BYTES"]) == limit
