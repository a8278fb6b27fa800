"""Our exported graph on OpenVINO's runtime (f32, and bf16 where the CPU has AMX) against ONNX Runtime, same scorer.

OpenVINO is not a dependency: it is installed (pinned, no other packages) into the bench folder on first use.
Its ONNX frontend (2026.4) gives opset-23 `Attention` with grouped K/V heads the K/V heads' output width, so the
bench reads a copy of the graph whose K/V heads are repeated before each `Attention` (the same function; ORT
scores it identically). Every row is our scorer (tokenization, batching, prefix sharing on) with only the session
swapped; rows interleave in one process, best of each. Δ and Spearman are against ONNX Runtime f32.

Run: python bench/openvino.py [--pairs 24] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import BENCH_DIR, bench_model, mixed_pairs, print_table

OPENVINO_PINS = ["openvino==2026.4.1", "openvino-telemetry==2025.2.0"]
OPENVINO_DIR = BENCH_DIR / "venvs" / "openvino-target"
REPEATED_KV_DIR = BENCH_DIR / "qwen3-0.6b-shape-repeated-kv"
_ONNX_TYPES = {"f32": "tensor(float)", "i64": "tensor(int64)"}


def import_openvino():
    """The openvino module, pip-installed (pinned, --no-deps: our numpy serves it) into the bench folder once."""
    marker = OPENVINO_DIR / ".installed"
    if not marker.exists() or marker.read_text() != "\n".join(OPENVINO_PINS):
        print(f"installing {', '.join(OPENVINO_PINS)} into {OPENVINO_DIR} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--upgrade",
                "--target",
                str(OPENVINO_DIR),
                *OPENVINO_PINS,
            ],
            check=True,
        )
        marker.write_text("\n".join(OPENVINO_PINS))
    sys.path.insert(0, str(OPENVINO_DIR))
    import openvino

    return openvino


def repeated_kv_copy(model: Path) -> Path:
    """A copy of the f32 past-K/V graph with each layer's K/V heads repeated to the query heads (cached, and made
    again when `model` was re-exported: the copy carries its manifest)."""
    from rerank_core.locate.manifest import MANIFEST_NAME

    copied = REPEATED_KV_DIR / MANIFEST_NAME
    if copied.exists() and copied.read_text() == (model / MANIFEST_NAME).read_text():
        return REPEATED_KV_DIR
    import onnx
    from onnx import helper, numpy_helper

    config = json.loads((model / "config.json").read_text())
    group = config["num_attention_heads"] // config["num_key_value_heads"]
    graph_model = onnx.load(str(model / "model.onnx"))
    graph = graph_model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([2], np.int64), "kv_group_axis"),
            numpy_helper.from_array(np.array([1, 1, group, 1, 1], np.int64), "kv_group_repeats"),
            numpy_helper.from_array(
                np.array([0, config["num_attention_heads"], -1, config["head_dim"]], np.int64), "kv_query_heads_shape"
            ),
        ]
    )
    nodes = []
    for node in graph.node:
        if node.op_type == "Attention":
            for slot in (1, 2):  # key, value: [B, kv, T, d] → [B, kv, group, T, d] → [B, heads, T, d]
                name = node.input[slot]
                nodes += [
                    helper.make_node("Unsqueeze", [name, "kv_group_axis"], [f"{name}_grouped"]),
                    helper.make_node("Tile", [f"{name}_grouped", "kv_group_repeats"], [f"{name}_tiled"]),
                    helper.make_node("Reshape", [f"{name}_tiled", "kv_query_heads_shape"], [f"{name}_repeated"]),
                ]
                node.input[slot] = f"{name}_repeated"
        nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    staging = REPEATED_KV_DIR.with_name(REPEATED_KV_DIR.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model, staging, ignore=shutil.ignore_patterns("model*.onnx*"))
    onnx.save(graph_model, str(staging / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    shutil.rmtree(REPEATED_KV_DIR, ignore_errors=True)
    staging.rename(REPEATED_KV_DIR)
    return REPEATED_KV_DIR


class OpenVinoSession:
    """The part of ort.InferenceSession our scorer uses (get_inputs, get_outputs, run), over an OpenVINO model."""

    def __init__(self, openvino, graph: Path, threads: int, precision: str):
        core = openvino.Core()
        self.compiled = core.compile_model(
            core.read_model(str(graph)),
            "CPU",
            {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads},
        )
        self.request = self.compiled.create_infer_request()

    @staticmethod
    def _describe(port) -> SimpleNamespace:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return SimpleNamespace(
            name=port.get_any_name(), shape=shape, type=_ONNX_TYPES[port.get_element_type().get_type_name()]
        )

    def get_inputs(self) -> list:
        """Inputs as ORT describes them: name, shape (None for dynamic), type."""
        return [self._describe(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list:
        """Outputs as ORT describes them."""
        return [self._describe(p) for p in self.compiled.outputs]

    def run(self, names: list[str], feed: dict) -> list[np.ndarray]:
        """Like ort.InferenceSession.run."""
        results = self.request.infer(feed)
        return [results[self.compiled.output(name)] for name in names]


def main() -> None:
    """Interleaved rounds of ORT f32, OpenVINO f32 and bf16, ORT int8 on the same pairs; print the table."""
    from scipy.stats import spearmanr

    from rerank_core.backends.onnx import OnnxQwen3Scorer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    openvino = import_openvino()
    model = bench_model("f32,int8")
    repeated = repeated_kv_copy(model)
    pairs = mixed_pairs(args.pairs, queries=6)
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")

    def scorer(folder: Path, dtype: str, precision: str | None = None):
        start = time.perf_counter()
        row = OnnxQwen3Scorer.open(folder, dtype=dtype, intra_op_threads=args.threads)
        if precision:
            row.replace_session(OpenVinoSession(openvino, row.graph_path, args.threads, precision))
        return row, time.perf_counter() - start

    rows = {
        "ONNX Runtime f32 (ours, default)": scorer(model, "f32"),
        "ONNX Runtime f32, repeated-K/V graph": scorer(repeated, "f32"),
        "OpenVINO f32": scorer(repeated, "f32", "f32"),
    }
    if has_bf16:
        rows["OpenVINO bf16 (AMX)"] = scorer(repeated, "f32", "bf16")
    rows["ONNX Runtime int8 (ours)"] = scorer(model, "int8")
    best: dict[str, tuple[float, np.ndarray]] = {}
    for round_ in range(args.rounds):
        for label, (row, _) in rows.items():
            start = time.perf_counter()
            scores = row.score(pairs)
            seconds = time.perf_counter() - start
            print(f"  round {round_ + 1}, {label}: {len(pairs) / seconds:.3f} pairs/s", flush=True)
            if label not in best or seconds < best[label][0]:
                best[label] = (seconds, scores)
    base_s, reference = next(iter(best.values()))
    print_table(
        f"OpenVINO {openvino.__version__} vs ONNX Runtime — 0.6B shape, {len(pairs)} mixed pairs over 6 queries, "
        f"{args.threads} threads, prefix sharing on, best of {args.rounds} interleaved rounds",
        ["runtime", "pairs/s", "× ORT f32", "load + compile s", "max |Δscore| vs ORT f32", "Spearman vs ORT f32"],
        [
            [
                label,
                len(pairs) / seconds,
                base_s / seconds,
                rows[label][1],
                float(np.abs(scores - reference).max()),
                float(spearmanr(scores, reference).statistic),
            ]
            for label, (seconds, scores) in best.items()
        ],
    )


if __name__ == "__main__":
    main()
