"""int8 recipes side by side on the 0.6B shape: the exporter's (u8 activations × 7-bit weights) against 8-bit weights,
with u8 activations (what VNNI and AMX compute exactly, and CPUs without VNNI saturate) and with s8 activations
(exact everywhere, slower without VNNI). Each is the same f32 graph quantized, scored in one process on the same
pairs against our f32 graph: pairs/s, max |Δscore| and Spearman vs f32.

Run: python bench/int8.py [--pairs 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, mixed_pairs, print_table

RECIPES = {  # label → quantize_int8 options
    "exporter (u8 × s8, 7-bit weights)": {},
    "u8 × s8, 8-bit weights": {"weight_bits": 8},
    "s8 × s8, 8-bit weights": {"weight_bits": 8, "signed_activations": True},
}


def main() -> None:
    """Quantize, score and print the table."""
    from scipy.stats import spearmanr

    from rerank_core.backends.onnx import OnnxQwen3Scorer
    from rerank_core.export.quantize import quantize_int8
    from rerank_core.locate.manifest import GraphEntry, Manifest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    model = bench_model("f32")
    pairs = mixed_pairs(args.pairs, queries=6)
    f32 = OnnxQwen3Scorer.open(model, intra_op_threads=args.threads).score(pairs)
    layers = json.loads((model / "config.json").read_text())["num_hidden_layers"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "config.json"):
            if (model / name).exists():
                (work / name).symlink_to(model / name)
        manifest = Manifest.read(model)
        manifest.graphs = [GraphEntry(file="model_int8.onnx", dtype="int8", layout="past_kv")]
        manifest.write(work)
        for label, options in RECIPES.items():
            for old in work.glob("model_int8.onnx*"):
                old.unlink()
            quantize_int8(model / "model.onnx", work / "model_int8.onnx", layers, **options)
            scorer = OnnxQwen3Scorer.open(work, dtype="int8", intra_op_threads=args.threads)
            scorer.score(pairs[:2])  # warm-up
            started = time.perf_counter()
            scores = scorer.score(pairs)
            seconds = time.perf_counter() - started
            rows.append(
                [
                    label,
                    len(pairs) / seconds,
                    float(np.abs(scores - f32).max()),
                    float(spearmanr(scores, f32).statistic),
                ]
            )
            print(f"  {label}: {rows[-1][1]:.3f} pairs/s", flush=True)
    print_table(
        f"int8 recipes — 0.6B shape, {len(pairs)} mixed pairs, {args.threads} threads, prefix sharing on",
        ["recipe", "pairs/s", "max |Δscore| vs f32", "Spearman vs f32"],
        rows,
    )


if __name__ == "__main__":
    main()
