"""`rerank serve --model M` with no config fits the machine it starts on (this one: CPUs only, no GPU)."""

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from rerank_core.tiny_model import TINY_MODEL
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_serve_with_only_a_model_runs_on_a_machine_without_gpus(tmp_path):
    port = free_port()
    # Its own local Ray (the session's declares a GPU); cwd without configs/, so nothing but the defaults is used.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rerank_core.cli", "serve", "--model", TINY_MODEL, "--port", str(port)],
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
        reply = httpx.post(
            url + "/v1/rerank", json={"query": "What is ML?", "documents": ["ML.", "Pizza."]}, timeout=60
        )
        assert reply.status_code == 200 and len(reply.json()["results"]) == 2
        log = "".join(lines)
        assert "num_gpus" not in log.split("Reranker replicas:")[1].splitlines()[0]
        assert "CPU only, 2 ONNX Runtime threads" in log
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        reader.join(timeout=10)
