"""Model resolution: folders, built-ins, the Hub cache offline, and fast clear failures."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from rerank_core import ModelNotFoundError, Reranker
from rerank_core.model_files.hub import resolve_model_dir
from rerank_core.tiny_model import TINY_MODEL, tiny_model_dir


def test_local_folder_and_path_in_repo(tmp_path):
    shutil.copytree(tiny_model_dir(), tmp_path / "onnx")
    assert resolve_model_dir(tmp_path, path_in_repo="onnx") == tmp_path / "onnx"
    assert Reranker.from_pretrained(str(tmp_path), path_in_repo="onnx").score_pairs([("q", "d")]).shape == (1,)


def test_builtin_model():
    assert resolve_model_dir(TINY_MODEL) == tiny_model_dir()
    with pytest.raises(ModelNotFoundError, match="built-in models"):
        resolve_model_dir("builtin:nope")


def _fake_cache(root, repo_id, revision_sha="0123456789abcdef0123456789abcdef01234567"):
    """The Hugging Face cache layout huggingface_hub itself writes: refs/main → snapshots/<sha>/files."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision_sha
    shutil.copytree(tiny_model_dir(), snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision_sha)
    return snap


def test_hub_id_resolves_from_cache_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _fake_cache(tmp_path, "acme/tiny-reranker")
    assert resolve_model_dir("acme/tiny-reranker", cache_dir=tmp_path) == snap
    reranker = Reranker.from_pretrained("acme/tiny-reranker", cache_dir=tmp_path)
    assert reranker.scorer.model_name == "acme/tiny-reranker"
    assert reranker.score_pairs([("q", "d")]).shape == (1,)


def test_offline_cache_miss_fails_naming_model_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        Reranker.from_pretrained("Qwen/Qwen3-Reranker-0.6B", cache_dir=tmp_path)
    message = str(info.value)
    assert "Qwen/Qwen3-Reranker-0.6B" in message and "HF_HUB_OFFLINE" in message and "local folder" in message


def test_unreachable_hub_fails_fast_with_one_clear_message(tmp_path):
    """No network: the Hub endpoint is a closed port on loopback; the error comes at once, no retry loop."""
    code = (
        "from rerank_core import Reranker\n"
        f"Reranker.from_pretrained('Qwen/Qwen3-Reranker-0.6B', cache_dir={str(tmp_path)!r})\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rerank_core.errors.ModelNotFoundError") and "cannot be reached" in last
    assert elapsed < 60, elapsed  # measured ~3 s including interpreter start-up


def test_neither_folder_nor_repo_id(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither an existing folder"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "dir"))
