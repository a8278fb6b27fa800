"""int8 recipes side by side on the 0.6B shape: the exporter's (u8 activations per token × per-channel weights of this
CPU's bits — 8 with VNNI/AMX, 7 without —, the first two decoder layers in f32, each down projection smoothed with
calibrated SmoothQuant scales) against the previous exporter's, other sets of f32 layers, 7- and 8-bit weights (8 is
exact on VNNI and AMX and saturates without VNNI), s8 activations (exact everywhere, slower without VNNI), and
OpenVINO's own int8 (int8 weights, dynamic int8 activations: bench/openvino_int8.py). Each is the same f32 graph,
scored in one process on the same pairs against our f32 graph: pairs/s (and its ratio to the first row), max
|Δscore| and Spearman vs f32. Random weights crowd the scores together: the hard case for ranking.

Run: python bench/int8.py [--pairs 48] [--threads 2] [--seed 0] [--recipes exporter,w7,openvino-token,...]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, cpu_description, mixed_pairs, print_table

# name → (label, quantize_int8 options for a model of n layers)
RECIPES = {
    "exporter": (
        "exporter 7: layers 0, 1 f32, down projections smoothed, this CPU's weight bits",
        lambda n: {"down_input_max": _down_max()},
    ),
    "exporter-6": ("exporter 6: layer 0 f32", lambda n: {"f32_layers": [0]}),
    "smooth-first": (
        "layer 0 f32, down projections smoothed",
        lambda n: {"f32_layers": [0], "down_input_max": _down_max()},
    ),
    "first-two": ("layers 0, 1 f32", lambda n: {"f32_layers": [0, 1]}),
    "first-three": ("layers 0–2 f32", lambda n: {"f32_layers": [0, 1, 2]}),
    "first-four": ("layers 0–3 f32", lambda n: {"f32_layers": [0, 1, 2, 3]}),
    "first-last": ("layers 0 and last f32", lambda n: {"f32_layers": [0, n - 1]}),
    "all-int8": ("every layer int8", lambda n: {"f32_layers": []}),
    "w7": (
        "exporter 7 with 7-bit weights (its choice on CPUs without VNNI)",
        lambda n: {"down_input_max": _down_max(), "weight_bits": 7},
    ),
    "w8": ("u8 × s8, 8-bit weights, layers 0, 1 f32", lambda n: {"weight_bits": 8}),
    "s8-w8": ("s8 × s8, 8-bit weights, layers 0, 1 f32", lambda n: {"weight_bits": 8, "signed_activations": True}),
}


# name → (label, dynamic activation quantization group size): OpenVINO's int8 (bench/openvino_int8.py), 8-bit
# weights, layers 0, 1 f32, no smoothing.
OPENVINO_RECIPES = {
    "openvino-token": ("OpenVINO: int8 weights, int8 activations per token (group 1,024)", 1024),
    "openvino-group32": ("OpenVINO: int8 weights, int8 activations per 32 channels (its default)", 32),
    "openvino-weights": ("OpenVINO: int8 weights, f32 activations", 0),
}


@functools.cache
def _down_max():
    """The bench checkpoint's down-projection input maxima over the calibration pairs (not the measured pairs)."""
    from bench.common import bench_checkpoint
    from rerank_core.families.qwen3.calibration import down_input_maxima

    return down_input_maxima(bench_checkpoint())


def main() -> None:
    """Quantize, score and print the table."""
    from scipy.stats import spearmanr

    from bench.openvino_int8 import openvino_int8_session
    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.export.quantize import default_f32_layers, quantize_int8
    from rerank_core.model_files.manifest import GraphEntry, Manifest

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help="comma-separated: " + ", ".join([*RECIPES, *OPENVINO_RECIPES]),
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="which mixed pairs")
    args = parser.parse_args()

    model = bench_model("f32")
    pairs = mixed_pairs(args.pairs, queries=6, seed=args.seed)
    f32 = OnnxScorer.open(model, intra_op_threads=args.threads).score(pairs)
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
        for name in args.recipes.split(","):
            if name in OPENVINO_RECIPES:
                label, group_size = OPENVINO_RECIPES[name]
                scorer = OnnxScorer.open(model, intra_op_threads=args.threads)
                scorer.replace_session(
                    openvino_int8_session(model / "model.onnx", default_f32_layers(layers), group_size, args.threads)
                )
            else:
                label, options = RECIPES[name]
                for old in work.glob("model_int8.onnx*"):
                    old.unlink()
                quantize_int8(model / "model.onnx", work / "model_int8.onnx", layers, **options(layers))
                scorer = OnnxScorer.open(work, dtype="int8", intra_op_threads=args.threads)
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
    base = rows[0][1]
    print_table(
        f"int8 recipes — 0.6B shape, {len(pairs)} mixed pairs (seed {args.seed}), {args.threads} threads, prefix"
        f" sharing on (ratios against the first row); {cpu_description()}",
        ["recipe", "pairs/s", "× first row", "max |Δscore| vs f32", "Spearman vs f32"],
        [[label, rate, rate / base, delta, rho] for label, rate, delta, rho in rows],
    )


if __name__ == "__main__":
    main()
