"""Manifests: today's format names each graph's layout; folders written with the first format still load the same."""

import json
import shutil

import numpy as np
import pytest

from rerank_core import ModelFormatError, Reranker
from rerank_core.model_files.manifest import MANIFEST_NAME, Manifest
from rerank_core.tiny_model import tiny_model_dir

LEGACY = {
    "format": "qwen-rerank/1",
    "output": "logit",
    "yes_id": 5,
    "no_id": 6,
    "pad_id": 0,
    "source": "m",
    "exporter": "4",
}


def _write(folder, data):
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize("past_kv,cpu_layout", [(True, "past_kv"), (False, "plain")])
def test_a_first_format_manifest_reads_as_layouts(tmp_path, past_kv, cpu_layout):
    _write(
        tmp_path,
        {
            **LEGACY,
            "graphs": {"f32": "model.onnx", "int8": "model_int8.onnx"},
            "cuda_graphs": {"f16": "model_cuda_f16.onnx"},
            "past_kv": past_kv,
        },
    )
    manifest = Manifest.read(tmp_path)
    assert [(g.file, g.dtype.value, g.layout) for g in manifest.graphs] == [
        ("model.onnx", "f32", cpu_layout),
        ("model_int8.onnx", "int8", cpu_layout),
        ("model_cuda_f16.onnx", "f16", "causal"),
    ]
    assert (manifest.yes_id, manifest.no_id, manifest.exporter) == (5, 6, "4")


def test_an_export_with_a_first_format_manifest_scores_as_it_did(tmp_path, mixed_pairs):
    folder = shutil.copytree(tiny_model_dir(), tmp_path / "old")
    today = Manifest.read(folder)
    legacy = {
        **LEGACY,
        "graphs": {"f32": "model.onnx"},
        "cuda_graphs": {},
        "past_kv": True,
        **today.model_dump(mode="json", include={"yes_id", "no_id", "pad_id", "source", "prefix", "suffix"}),
    }
    _write(folder, legacy)
    old = Reranker.from_pretrained(str(folder))
    assert old.scorer.layout.name == "past_kv" and old.scorer.shares_prefix
    np.testing.assert_allclose(
        old.score_pairs(mixed_pairs),
        Reranker.from_pretrained(str(tiny_model_dir())).score_pairs(mixed_pairs),
        atol=1e-6,
    )


def test_a_manifest_this_version_cannot_read_is_a_clear_error(tmp_path):
    _write(
        tmp_path,
        {**LEGACY, "format": "qwen-rerank/2", "graphs": [{"file": "m.onnx", "dtype": "f32", "layout": "flash"}]},
    )
    with pytest.raises(ModelFormatError, match=f"{MANIFEST_NAME}: .*graphs.0.layout: Input should be"):
        Manifest.read(tmp_path)
