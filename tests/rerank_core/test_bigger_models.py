"""The fused and paged layouts at Qwen3-Reranker-4B's layer shapes (one layer) and the paged one at 8B's (two layers,
random weights): exported, weights in an external file where they pass 1.5 GB (the 8B's two layers do), exact
against the official recipe. Layers chained through the paged cache are the tiny model's tests' (two layers)."""

import numpy as np
import pytest

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.export import export_checkpoint
from rerank_core.tiny_model import build_checkpoint

pytestmark = pytest.mark.slow
# The layer shapes of Qwen3-4B and Qwen3-8B (their config.json), on two layers.
SHAPES = {
    "4B": dict(hidden_size=2560, intermediate_size=9728, num_attention_heads=32, num_key_value_heads=8),
    "8B": dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32, num_key_value_heads=8),
}
PAIRS = [("What is machine learning?", "ML algorithms can learn from data."), ("capital of France", "Paris")] + [
    ("weather today", "sunny " * n) for n in (1, 40, 150)
]


@pytest.mark.parametrize("model", sorted(SHAPES))
def test_fused_and_paged_graphs_at_bigger_layer_shapes_match_official(model, tmp_path):
    from tests.oracle import OfficialRecipe

    # Two layers pass the 8B's weights over the 1.5 GB that sends them to an external file; one shows the 4B's shapes.
    layers = 2 if model == "8B" else 1
    shape = dict(SHAPES[model], head_dim=128, num_hidden_layers=layers, initializer_range=0.02)
    checkpoint = build_checkpoint(tmp_path / "ckpt", shape=shape)
    # The 8B's external data is read by one loading path for both layouts (session._open_fused): paged shows it.
    layouts = ("fused", "paged") if model == "4B" else ("paged",)
    graphs = {f"{layout}_dtypes": ["f32"] for layout in layouts}
    folder = export_checkpoint(checkpoint, tmp_path / "export", dtypes=[], **graphs)
    official = OfficialRecipe(checkpoint).score(PAIRS)
    for layout in layouts:
        data = sorted(p.name for p in folder.glob(f"model_{layout}.onnx*"))
        graph = f"model_{layout}.onnx"
        assert data == ([graph, f"{graph}.data"] if model == "8B" else [graph])
        scores = OnnxScorer.open(folder, graph_variant=layout).score(PAIRS)
        np.testing.assert_allclose(scores, official, atol=1e-4)
