"""`rerank serve --model A --model B` with no config fits the machine it starts on (this one: CPUs only, no GPU): each
model a deployment of its own, named as given (a folder by its name), the first the default."""

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from rerank_core.tiny_model import TINY_MODEL
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow


def test_serve_with_only_models_runs_on_a_machine_without_gpus(tmp_path):
    port = free_port()
    # Its own local Ray (the session's declares a GPU); cwd without configs/, so nothing but the defaults is used.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    folder = REPO / "rerank_core/assets/tiny-qwen3-reranker"  # the built-in model's own folder, named by its name
    models = ["--model", TINY_MODEL, "--model", str(folder)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerank_core.cli", "serve", *models, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("rerank endpoint ready" in line for line in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}"
        body = {"query": "What is ML?", "documents": ["ML.", "Pizza."]}
        default = httpx.post(url + "/v1/rerank", json=body, timeout=60)
        assert default.status_code == 200 and len(default.json()["results"]) == 2
        assert default.json()["model"] == TINY_MODEL
        named = httpx.post(url + "/v1/rerank", json={**body, "model": folder.name}, timeout=60)
        assert named.status_code == 200 and named.json()["model"] == folder.name
        listed = [card["id"] for card in httpx.get(url + "/v1/models", timeout=60).json()["data"]]
        assert listed == [TINY_MODEL, folder.name]
        log = "".join(lines)
        fitted = [line for line in log.splitlines() if " replicas (" in line]
        assert len(fitted) == 2 and all("num_gpus" not in line for line in fitted), fitted
        # two models share the two CPUs, each replica using both cores while the other idles
        assert all("num_cpus=1, CPU only, 2 ONNX Runtime threads" in line for line in fitted), fitted
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        reader.join(timeout=10)
