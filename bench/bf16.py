"""The bf16 path's runtime: our f32 graph on OpenVINO (f32, and bf16 where the CPU multiplies it) against ONNX Runtime.

Every row is our scorer (tokenization, batching, prefix sharing on) on the same graph with only the session swapped:
ONNX Runtime, or OpenVINO reading the graph's cached IR (grouped-K/V attention rewritten, residual sums marked f32,
weights stored in bf16 for bf16 where bf16 holds them; written once before the rows load, its time printed) at the
precision named. The f32 row swaps the session of an ONNX Runtime scorer, so its load time counts both; the bf16
row is the library's `dtype: bf16`; the row "every node bf16" compiles the rewritten ONNX graph without the marks
(the path before them), so what the marks buy is measured side by side. Rows interleave in one process, best of
each. Δ and Spearman are against ONNX Runtime f32, which matches the official recipe to 1e-5
(tests/rerank_core/test_parity.py). The last column is each row's stability: how far its first `--alone` pairs
scored one per call stray from their scores in the shared calls (0 for dtype bf16 since its calls fill whole key
blocks; the unmarked row's calls are padded only to their longest row, as before, and may stray). On a CPU
without AMX-BF16 or AVX512-BF16 OpenVINO computes f32 whatever the hint, so the bf16 rows are left out and say so.

Run: python bench/bf16.py [--pairs 24] [--rounds 2] [--threads 2] [--alone 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, cpu_description, mixed_pairs, print_table


def main() -> None:
    """Interleaved rounds of ORT f32, OpenVINO f32 and bf16, ORT int8 on the same pairs; print the table."""
    from scipy.stats import spearmanr

    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.backends.onnx.openvino_ir import cached_ir, group_query_attention
    from rerank_core.backends.onnx.openvino_session import NO_BF16, OpenVinoSession, cpu_runs_bf16, import_openvino

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alone", type=int, default=12, help="pairs also scored one per call (stability column)")
    args = parser.parse_args()
    model = bench_model("f32,int8")
    pairs = mixed_pairs(args.pairs, queries=6)

    for weights in ("f32", "bf16"):  # the f32 row's IR and dtype bf16's
        start = time.perf_counter()
        cached_ir(model / "model.onnx", weights=weights)
        print(
            f"OpenVINO IR, {weights} weights: ready in {time.perf_counter() - start:.1f} s (written once, then cached)"
        )

    def scorer(dtype: str, session=None):
        start = time.perf_counter()
        row = OnnxScorer.open(model, dtype=dtype, intra_op_threads=args.threads)
        if session:
            row.replace_session(session(row.graph_path))
        return row, time.perf_counter() - start

    def unmarked_bf16(graph):
        """The rewritten graph compiled in bf16 without the marks: every node bf16, the residual sums too."""
        core = import_openvino().Core()
        onnx = core.read_model(str(graph))
        group_query_attention(onnx)
        config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": args.threads}
        session = OpenVinoSession(core.compile_model(onnx, "CPU", config))
        session.key_block = 1  # calls padded only to their longest row, as before the key-block padding
        return session

    rows = {
        "ONNX Runtime f32": scorer("f32"),
        "OpenVINO f32": scorer("f32", lambda g: OpenVinoSession.open(g, precision="f32", threads=args.threads)),
    }
    if cpu_runs_bf16():
        rows["OpenVINO bf16, every node bf16 (no marks)"] = scorer("f32", unmarked_bf16)
        rows["OpenVINO bf16, residual sums f32 (dtype bf16)"] = scorer("bf16")  # the library's path, no ORT first
    else:
        print(f"OpenVINO bf16: left out, {NO_BF16}", flush=True)
    rows["ONNX Runtime int8"] = scorer("int8")
    best: dict[str, tuple[float, np.ndarray]] = {}
    for round_ in range(args.rounds):
        for label, (row, _) in rows.items():
            start = time.perf_counter()
            scores = row.score(pairs)
            seconds = time.perf_counter() - start
            print(f"  round {round_ + 1}, {label}: {len(pairs) / seconds:.3f} pairs/s", flush=True)
            if label not in best or seconds < best[label][0]:
                best[label] = (seconds, scores)
    alone = {
        label: np.array([row.score([pair])[0] for pair in pairs[: args.alone]]) for label, (row, _) in rows.items()
    }
    base_s, reference = next(iter(best.values()))
    print_table(
        f"OpenVINO {import_openvino().__version__} vs ONNX Runtime — 0.6B shape, {len(pairs)} mixed pairs over 6 "
        f"queries, {args.threads} threads, prefix sharing on, best of {args.rounds} interleaved rounds; "
        f"{cpu_description()}",
        [
            "runtime",
            "pairs/s",
            "× ORT f32",
            "load + compile s",
            "max |Δscore| vs ORT f32",
            "Spearman vs ORT f32",
            f"max |Δscore| alone vs shared call ({min(args.alone, len(pairs))} pairs)",
        ],
        [
            [
                label,
                len(pairs) / seconds,
                base_s / seconds,
                rows[label][1],
                float(np.abs(scores - reference).max()),
                f"{spearmanr(scores, reference).statistic:.4f}",  # 4 places: bf16 rows differ in the 4th
                float(np.abs(alone[label] - scores[: args.alone]).max()),
            ]
            for label, (seconds, scores) in best.items()
        ],
    )


if __name__ == "__main__":
    main()
