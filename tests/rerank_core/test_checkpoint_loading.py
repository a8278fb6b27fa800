"""Official-style PyTorch checkpoints load by name or path: exported once into a cache, shared safely by processes."""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rerank_core import Dtype, ModelFormatError, ModelNotFoundError, Reranker
from rerank_core.cache_dir import CACHE_ENV, source_identity
from rerank_core.export.cache import export_key
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SHA = "89abcdef0123456789abcdef0123456789abcdef"
REPO_ID = "acme/Qwen3-Reranker-tiny"
PAIRS = [
    ("What is machine learning?", "Machine learning is a subset of AI."),
    ("How to make coffee?", "Pizza."),
    ("Où est Paris ?", "Paris est la capitale de la France. " * 30),
]
EXPORT_LOG = "exporting it to ONNX"


def _snapshot_files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def hf_cache(tiny_checkpoint, tmp_path_factory) -> Path:
    """The random Qwen3 checkpoint laid out as huggingface_hub's cache entry for REPO_ID."""
    root = tmp_path_factory.mktemp("hf-cache")
    repo = root / ("models--" + REPO_ID.replace("/", "--"))
    shutil.copytree(tiny_checkpoint, repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return root


@pytest.fixture(scope="module")
def export_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@contextlib.contextmanager
def layers_visited():
    """The library's resolution, export and backend layers in the order calls enter them (repeats folded)."""
    visits: list[str] = []

    def profile(frame, event, _arg):
        parts = frame.f_globals.get("__name__", "").split(".") if event == "call" else []
        layer = parts[1] if len(parts) > 1 and parts[0] == "rerank_core" else None
        if layer in ("locate", "export", "backends") and (not visits or visits[-1] != layer):
            visits.append(layer)

    sys.setprofile(profile)
    try:
        yield visits
    finally:
        sys.setprofile(None)


_LOAD = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "from rerank_core import Reranker\n"
    "r = Reranker.from_pretrained(sys.argv[1], export_cache_dir=sys.argv[2])\n"
    "print('SCORES', r.score_pairs([('What is ML?', 'ML learns from data.')]).tolist(), flush=True)\n"
)


def _exports(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_hub_checkpoint_offline_is_exported_once_and_scores_like_the_official_recipe(
    hf_cache, export_cache, official, monkeypatch, caplog
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _snapshot_files(hf_cache)
    with caplog.at_level(logging.INFO, logger="rerank_core.export_cache"):
        first = Reranker.from_pretrained(REPO_ID, cache_dir=hf_cache, export_cache_dir=export_cache)
    assert sum(EXPORT_LOG in r.getMessage() for r in caplog.records) == 1
    (export,) = _exports(export_cache)
    assert export.name.startswith("acme--Qwen3-Reranker-tiny-f32-") and first.scorer.graph_path.parent == export
    assert first.scorer.dtype is Dtype.F32 and first.scorer.model_name == REPO_ID
    assert np.abs(first.score_pairs(PAIRS) - official(PAIRS)).max() <= 1e-4
    assert _snapshot_files(hf_cache) == before  # nothing written into the Hugging Face cache

    caplog.clear()
    started = time.monotonic()
    with layers_visited() as visits:
        second = Reranker.from_pretrained(REPO_ID, cache_dir=hf_cache, export_cache_dir=export_cache)
    assert time.monotonic() - started < 5
    assert visits == ["locate", "export", "backends"]  # resolution, export, the scorer: once each, never back
    assert not any(EXPORT_LOG in r.getMessage() for r in caplog.records)
    assert second.scorer.graph_path == first.scorer.graph_path
    np.testing.assert_array_equal(second.score_pairs(PAIRS), first.score_pairs(PAIRS))


def test_a_local_checkpoint_is_exported_into_the_cache_not_next_to_it_and_a_killed_export_counts_for_nothing(
    tiny_checkpoint, export_cache, official
):
    """An export killed mid-way leaves nothing that passes for complete; the next load exports the folder into the
    cache (the CLI test below reuses it), writing nothing next to the checkpoint."""
    before, exported = _snapshot_files(tiny_checkpoint), _exports(export_cache)  # the Hub test's entry
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOAD, str(tiny_checkpoint), str(export_cache)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # wait until the export has begun, then kill it mid-way
        if EXPORT_LOG in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _exports(export_cache) == exported  # only the lock file and a staging folder may be left
    reranker = Reranker.from_pretrained(str(tiny_checkpoint), export_cache_dir=export_cache)
    assert _snapshot_files(tiny_checkpoint) == before
    assert reranker.scorer.graph_path.is_relative_to(export_cache)
    assert np.abs(reranker.score_pairs(PAIRS) - official(PAIRS)).max() <= 1e-4
    staging = [
        p.name for p in export_cache.iterdir() if p.is_dir() and p.name.startswith(".") and p.name != ".identities"
    ]
    assert staging == []  # cleaned up


def test_cli_score_takes_a_checkpoint_and_the_cache_from_the_environment(tiny_checkpoint, export_cache, tmp_path):
    """`rerank score --model CHECKPOINT` with $QWEN_RERANK_CACHE: the export made above is reused, not redone."""
    docs = tmp_path / "docs.txt"
    docs.write_text("Machine learning is a subset of AI.\nPizza.\n")
    env = {**os.environ, CACHE_ENV: str(export_cache)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rerank_core.cli",
            "score",
            "--model",
            str(tiny_checkpoint),
            "--query",
            "What is ML?",
            "--documents",
            str(docs),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert EXPORT_LOG not in proc.stderr and '"relevance_score"' in proc.stdout


def test_a_checkpoint_loaded_for_a_gpu_layout_is_exported_with_that_layouts_graph(
    tiny_checkpoint, export_cache, official
):
    """graph_variant paged (or fused) on a checkpoint: the export, a cache entry of its own, holds that GPU graph."""
    before = set(_exports(export_cache))
    reranker = Reranker.from_pretrained(str(tiny_checkpoint), export_cache_dir=export_cache, graph_variant="paged")
    assert reranker.scorer.layout.name == "paged" and reranker.scorer.graph_path.is_relative_to(export_cache)
    assert np.abs(reranker.score_pairs(PAIRS) - official(PAIRS)).max() <= 1e-4
    (entry,) = set(_exports(export_cache)) - before
    again = Reranker.from_pretrained(str(tiny_checkpoint), export_cache_dir=export_cache, graph_variant="paged")
    assert again.scorer.layout.name == "paged" and set(_exports(export_cache)) - before == {entry}  # reused


def test_the_cache_key_follows_source_bytes_dtype_and_exporter(tiny_checkpoint, tmp_path):
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    same = source_identity(copy)
    assert same == source_identity(tiny_checkpoint)
    (copy / "generation_config.json").write_text('{"changed": true}')
    assert source_identity(copy) != same
    memo = tmp_path / "memo"
    remembered = source_identity(copy, memo_dir=memo)
    assert source_identity(copy, memo_dir=memo) == remembered == source_identity(copy)
    (copy / "generation_config.json").write_text('{"changed": "again, and longer"}')
    assert source_identity(copy, memo_dir=memo) == source_identity(copy) != remembered
    keys = {export_key(same, Dtype.F32, "2"), export_key(same, Dtype.INT8, "2"), export_key(same, Dtype.F32, "3")}
    assert len(keys) == 3


def test_two_processes_loading_at_once_export_once(tiny_checkpoint, tmp_path):
    cache = tmp_path / "exports"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOAD, str(tiny_checkpoint), str(cache)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert sum(err.count(EXPORT_LOG) for _, err in outputs) == 1
    scores = [next(line for line in out.splitlines() if line.startswith("SCORES")) for out, _ in outputs]
    assert scores[0] == scores[1]
    assert len(_exports(cache)) == 1


def test_without_torch_the_error_names_the_extra_and_the_export_command(tiny_checkpoint, tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rerank_core import Reranker\n"
        f"Reranker.from_pretrained({str(tiny_checkpoint)!r}, export_cache_dir={str(tmp_path)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("ImportError")
    assert "pip install 'qwen-rerank[export]'" in last and f"rerank export {tiny_checkpoint} --out DIR" in last


def test_a_folder_that_is_neither_says_what_it_found_and_expects(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelFormatError) as info:
        Reranker.from_pretrained(str(tmp_path))
    message = str(info.value)
    assert "notes.txt" in message and "model_type='bert'" in message
    assert "ONNX export" in message and "Qwen3 checkpoint" in message


def test_hub_checkpoint_without_cached_weights_offline_fails_clearly(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    light = shutil.copytree(hf_cache, tmp_path / "hf")
    snapshot = light / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / SHA
    for weights in snapshot.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        Reranker.from_pretrained(REPO_ID, cache_dir=light, export_cache_dir=tmp_path / "exports")


def test_a_folder_with_one_graph_loads_without_naming_its_dtype(tiny_export, tmp_path):
    only_int8 = tmp_path / "int8-only"
    only_int8.mkdir()
    for name in ("model_int8.onnx", "tokenizer.json", "config.json", "rerank_manifest.json"):
        shutil.copy(tiny_export / name, only_int8 / name)
    assert Reranker.from_pretrained(str(only_int8)).scorer.dtype is Dtype.INT8
    assert Reranker.from_pretrained(str(tiny_export)).scorer.dtype is Dtype.F32  # several: the CPU's choice
