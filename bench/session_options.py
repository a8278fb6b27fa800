"""ONNX Runtime knobs on the 0.6B-shape model: graph optimization level, thread spinning and memory arena, each
against our default session on the same pairs; then where the f32 time goes (ORT's per-operator profile, by op
type). --fusions-only: what ORT's transformers optimizer and onnxscript's ORT fusions change in our graph.

Run: python bench/session_options.py [--pairs 16] [--threads 2] [--profile-only [--dtype int8]] [--fusions-only]
     [--budgets 256,512,1024,2048]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, mixed_pairs, print_table

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def variant_session(
    graph: Path, threads: int, level: str = "all", spinning: bool = True, arena: bool = True, profile: str | None = None
):
    """An InferenceSession with the given knobs (profile: a file prefix for ORT's per-operator trace)."""
    options = ort.SessionOptions()
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])


def fusion_report(model: Path) -> None:
    """What ORT's transformers optimizer (qwen3) and onnxscript's ORT fusions change in our f32 graph, by op type."""
    from collections import Counter

    import onnx
    import onnx_ir
    from onnxruntime.transformers.optimizer import optimize_model
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    config = json.loads((model / "config.json").read_text())
    graph = model / "model.onnx"
    before = Counter(n.op_type for n in onnx.load(str(graph), load_external_data=False).graph.node)
    transformers = optimize_model(
        str(graph),
        model_type="qwen3",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        opt_level=0,
    )
    ir_model, _ = optimize_for_ort(onnx_ir.load(str(graph)))
    after = {
        "onnxruntime.transformers optimize_model (qwen3)": Counter(n.op_type for n in transformers.model.graph.node),
        "onnxscript optimize_for_ort": Counter(n.op_type for n in ir_model.graph),
    }
    print_table(
        f"Fusions on our f32 graph ({sum(before.values())} nodes)",
        ["optimizer", "nodes after", "op types changed"],
        [
            [
                name,
                sum(ops.values()),
                ", ".join(f"{op} {before[op]}→{ops[op]}" for op in sorted(before | ops) if before[op] != ops[op])
                or "none",
            ]
            for name, ops in after.items()
        ],
    )


def main() -> None:
    """Time each variant on the same pairs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile-only", action="store_true", help="only the per-operator profile")
    parser.add_argument("--dtype", default="f32", choices=["f32", "int8"], help="the graph --profile-only profiles")
    parser.add_argument("--fusions-only", action="store_true", help="only what graph fusion tools change")
    parser.add_argument("--budgets", help="only a token-budget sweep, e.g. 256,512,1024,2048 (f32 and int8)")
    args = parser.parse_args()

    from rerank_core.backends.onnx import OnnxScorer

    if args.budgets:
        budget_sweep([int(b) for b in args.budgets.split(",")], mixed_pairs(args.pairs, queries=6), args.threads)
        return

    if args.fusions_only:
        fusion_report(bench_model("f32,int8"))
        return

    if args.profile_only:
        operator_profile(
            OnnxScorer.open(bench_model("f32,int8"), dtype=args.dtype, intra_op_threads=args.threads),
            mixed_pairs(args.pairs, queries=4),
            args.threads,
        )
        return

    model = bench_model("f32,int8")
    pairs = mixed_pairs(args.pairs, queries=4)
    variants = [
        ("f32", "reference: ORT_ENABLE_ALL, spinning on, arena on", model, {}),
        ("f32", "ORT_ENABLE_EXTENDED", model, {"level": "extended"}),
        ("f32", "ORT_ENABLE_BASIC", model, {"level": "basic"}),
        ("f32", "intra-op spinning off", model, {"spinning": False}),
        ("f32", "CPU memory arena off", model, {"arena": False}),
        ("int8", "reference: ORT_ENABLE_ALL, spinning on, arena on", model, {}),
        ("int8", "intra-op spinning off", model, {"spinning": False}),
    ]
    rows, reference = [], {}
    for dtype, label, folder, knobs in variants:
        scorer = OnnxScorer.open(folder, dtype=dtype, intra_op_threads=args.threads)
        start = time.perf_counter()
        scorer.replace_session(variant_session(scorer.graph_path, args.threads, **knobs))
        load_s = time.perf_counter() - start
        scorer.score(pairs[:2])
        start = time.perf_counter()
        scores = scorer.score(pairs)
        seconds = time.perf_counter() - start
        reference.setdefault(dtype, (seconds, scores))
        base_s, base_scores = reference[dtype]
        rows.append(
            [dtype, label, len(pairs) / seconds, base_s / seconds, load_s, float(np.abs(scores - base_scores).max())]
        )
        print(f"  {dtype} {label}: {len(pairs) / seconds:.2f} pairs/s", flush=True)
        del scorer
    print_table(
        f"ONNX Runtime knobs — 0.6B shape, {len(pairs)} mixed pairs, {args.threads} threads",
        ["dtype", "variant", "pairs/s", "× reference", "session start s", "max |Δscore| vs reference"],
        rows,
    )
    operator_profile(OnnxScorer.open(model, intra_op_threads=args.threads), pairs, args.threads)


def budget_sweep(budgets: list[int], pairs: list, threads: int, rounds: int = 2) -> None:
    """Pairs/s per token budget (rows × longest per call), f32 and int8, prefix sharing on; interleaved rounds."""
    from rerank_core.backends.onnx import OnnxScorer

    model = bench_model("f32,int8")
    scorers = {
        (d, b): OnnxScorer.open(model, dtype=d, intra_op_threads=threads, token_budget=b)
        for d in ("f32", "int8")
        for b in budgets
    }
    best: dict = {}
    for scorer in scorers.values():
        scorer.score(pairs[:2])
    for _ in range(rounds):
        for key, scorer in scorers.items():
            start = time.perf_counter()
            scorer.score(pairs)
            best[key] = min(best.get(key, np.inf), time.perf_counter() - start)
    print_table(
        f"Token budget — 0.6B shape, {len(pairs)} mixed pairs over 6 queries, {threads} threads, prefix "
        f"sharing on, best of {rounds} interleaved rounds",
        ["dtype", "token budget", "pairs/s", f"× budget {budgets[0]}"],
        [[d, b, len(pairs) / best[d, b], best[d, budgets[0]] / best[d, b]] for d, b in scorers],
    )


def operator_profile(scorer, pairs: list, threads: int) -> None:
    """Score `pairs` on a profiling session and print node time by op type (ORT's trace, kernel time only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scorer.replace_session(variant_session(scorer.graph_path, threads, profile=str(Path(tmp) / "ort")))
        start = time.perf_counter()
        scorer.score(pairs)
        wall = time.perf_counter() - start
        trace = json.loads(Path(scorer.session.end_profiling()).read_text())
    by_op: dict[str, list[float]] = {}
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            entry = by_op.setdefault(event["args"]["op_name"], [0.0, 0])
            entry[0] += event["dur"] / 1e6
            entry[1] += 1
    total = sum(seconds for seconds, _ in by_op.values())
    rows = [
        [op, seconds, seconds / total, count]
        for op, (seconds, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[:12]
    ]
    print_table(
        f"Where the {scorer.dtype.value} time goes — {len(pairs)} mixed pairs, {threads} threads, "
        f"{wall:.1f} s wall, {total:.1f} s in kernels (ORT profile, top op types)",
        ["op type", "seconds", "share of kernel time", "calls"],
        rows,
    )


if __name__ == "__main__":
    main()
