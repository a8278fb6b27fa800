"""Bigger models on the CPU: the fused and paged layouts at Qwen3-Reranker-4B's attention shapes (one layer, random
weights), and graphs whose weights lie in an external file, as every graph of the 4B and 8B does (past 1.5 GB),
each exact against the official recipe. Layers chained through the paged cache are the tiny model's tests' (two
layers); the exporter's memory at 4B and 8B is bench/export_memory.py's."""

import numpy as np
import pytest

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.export import export_checkpoint
from rerank_core.export import graph as exporter
from rerank_core.tiny_model import build_checkpoint

pytestmark = pytest.mark.slow
# The attention of Qwen3-4B (its config.json): a 2560-wide stream, 32 query heads over 8 K/V heads of 128 — what the
# fused and paged operators take —, on one layer; its MLP (9728 wide) is narrowed, as no fused operator sees its width.
SHAPE_4B = dict(
    hidden_size=2560,
    intermediate_size=1024,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    num_hidden_layers=1,
    initializer_range=0.02,
)
PAIRS = [("What is machine learning?", "ML algorithms can learn from data."), ("capital of France", "Paris")] + [
    ("weather today", "sunny " * n) for n in (1, 40, 150)
]


def test_fused_and_paged_graphs_at_4bs_attention_shapes_match_official(tmp_path):
    from tests.oracle import OfficialRecipe

    checkpoint = build_checkpoint(tmp_path / "ckpt", shape=SHAPE_4B)
    folder = export_checkpoint(checkpoint, tmp_path / "export", dtypes=[], fused_dtypes=["f32"], paged_dtypes=["f32"])
    official = OfficialRecipe(checkpoint).score(PAIRS)
    for layout in ("fused", "paged"):
        scores = OnnxScorer.open(folder, graph_variant=layout).score(PAIRS)
        np.testing.assert_allclose(scores, official, atol=1e-4)


def test_graphs_with_their_weights_in_an_external_file_score_like_official(
    tiny_checkpoint, official, monkeypatch, tmp_path
):
    # The exporter moves weights to an external file past 1.5 GB (ONNX's protobufs stop at 2 GiB): every graph of
    # the 4B and 8B. Here at any size, so the tiny model takes that path: export, the CUDA-only layouts' rewrite as
    # they load (their weights left in place), and sessions reading them (the CUDA graph, a standard one like the
    # CPU graph, is not exported here: it loads as the CPU graph does).
    monkeypatch.setattr(exporter, "EXTERNAL_DATA_BYTES", 0)
    graphs = {"fused_dtypes": ["f32"], "paged_dtypes": ["f32"]}
    folder = export_checkpoint(tiny_checkpoint, tmp_path / "export", dtypes=["f32"], **graphs)
    want = official(PAIRS)
    for variant, graph in (("cpu", "model"), ("fused", "model_fused"), ("paged", "model_paged")):
        assert sorted(p.name for p in folder.glob(f"{graph}.onnx*")) == [f"{graph}.onnx", f"{graph}.onnx.data"]
        scores = OnnxScorer.open(folder, graph_variant=variant).score(PAIRS)
        np.testing.assert_allclose(scores, want, atol=1e-4)
