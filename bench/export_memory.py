"""The exporter's peak memory at Qwen3-Reranker-4B's and 8B's shapes: how much a machine needs to export them.

A bf16 checkpoint (as Qwen publishes them) with the real model's layer shapes and Qwen's real vocabulary, on fewer
layers, is exported once per (layout, dtype) in a fresh process that samples its anonymous resident memory (what
the machine must hold: the checkpoint's own pages are file-backed and reclaimable) and its peak RSS. Two layer
counts give the line peak = fixed + per-layer × layers; the table extrapolates it to the full 36 layers. Each
checkpoint is big enough that its graph's weights go to an external file, as the full model's do.

Run: python bench/export_memory.py [--shape 4B] [--layers 4,8] [--cases fused:f16,fused:f32,past_kv:f32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import cpu_description, print_table

# The real models' config.json (Qwen/Qwen3-Reranker-4B, -8B): 36 layers each; the 8B's embeddings are untied.
SHAPES = {
    "4B": dict(hidden_size=2560, intermediate_size=9728, num_attention_heads=32, num_key_value_heads=8, head_dim=128),
    "8B": dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32, num_key_value_heads=8, head_dim=128),
}
FULL_LAYERS = 36
GIB = 1 << 30


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(checkpoint: Path, layout: str, dtype: str, out: Path) -> None:
    """Export one graph in this process; print its peak anonymous memory and peak RSS (bytes) as JSON."""
    from rerank_core.export import export_checkpoint

    peak = [_status_kib("RssAnon")]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], _status_kib("RssAnon"))
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    before = _status_kib("RssAnon")
    options = {"dtypes": [dtype]} if layout == "past_kv" else {"dtypes": [], f"{LAYOUT_OPTION[layout]}": [dtype]}
    export_checkpoint(checkpoint, out, **options)
    weights = sum(p.stat().st_size for p in out.glob("*.onnx*"))
    print(
        json.dumps(
            {"anon": peak[0] * 1024, "before": before * 1024, "hwm": _status_kib("VmHWM") * 1024, "graph": weights}
        )
    )


LAYOUT_OPTION = {"causal": "cuda_dtypes", "fused": "fused_dtypes"}


def measure(checkpoint: Path, layout: str, dtype: str, tmp: Path) -> dict:
    """One export in a fresh process: its peaks."""
    out = tmp / f"export-{layout}-{dtype}"
    args = [sys.executable, __file__, "--child", str(checkpoint), layout, dtype, str(out)]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"export {layout} {dtype} failed:\n{result.stderr[-3000:]}")
    for path in out.glob("*"):
        path.unlink()
    out.rmdir()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Build the checkpoints, export each case at each layer count, print one table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5]))
        return
    from rerank_core.tiny_model import build_checkpoint

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="4B")
    parser.add_argument("--layers", default="4,8", help="two layer counts (the line through them is extrapolated)")
    parser.add_argument("--cases", default="fused:f16,fused:f32,past_kv:f32", help="layout:dtype, comma-separated")
    args = parser.parse_args()
    low, high = (int(n) for n in args.layers.split(","))
    cases = [tuple(case.split(":")) for case in args.cases.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-memory-") as tmp:
        measured: dict = {}
        for layers in (low, high):
            checkpoint = Path(tmp) / f"ckpt-{layers}"
            shape = dict(SHAPES[args.shape], num_hidden_layers=layers, initializer_range=0.02)
            build_checkpoint(checkpoint, vocabulary="qwen", weights="bfloat16", shape=shape)
            for layout, dtype in cases:
                measured[layers, layout, dtype] = result = measure(checkpoint, layout, dtype, Path(tmp))
                print(f"  {layers} layers, {layout} {dtype}: peak anon {result['anon'] / GIB:.2f} GiB", flush=True)
            for path in checkpoint.glob("*"):
                path.unlink()
        for layout, dtype in cases:
            a, b = measured[low, layout, dtype], measured[high, layout, dtype]
            per_layer = (b["anon"] - a["anon"]) / (high - low)
            graph_per_layer = (b["graph"] - a["graph"]) / (high - low)
            full_anon = a["anon"] + per_layer * (FULL_LAYERS - low)
            full_graph = a["graph"] + graph_per_layer * (FULL_LAYERS - low)
            for layers, result in ((low, a), (high, b)):
                rows.append(
                    [
                        layout,
                        dtype,
                        layers,
                        result["graph"] / GIB,
                        result["anon"] / GIB,
                        result["anon"] / result["graph"],
                        result["hwm"] / GIB,
                    ]
                )
            rows.append(
                [
                    layout,
                    dtype,
                    f"{FULL_LAYERS} (extrapolated)",
                    full_graph / GIB,
                    full_anon / GIB,
                    full_anon / full_graph,
                    "—",
                ]
            )
    print_table(
        f"Exporter peak memory at Qwen3-Reranker-{args.shape}'s shape (Qwen's vocabulary, bf16 checkpoint); "
        f"{cpu_description()}",
        ["layout", "dtype", "layers", "graph GiB", "peak anonymous GiB", "× graph", "peak RSS GiB"],
        rows,
    )


if __name__ == "__main__":
    main()
