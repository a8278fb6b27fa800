"""Long documents on the 0.6B shape: truncate at 1k tokens, the whole document in one sequence, and 1k windows.

Each measurement runs in its own process (time to score one (query, document) pair after a warm-up, peak RSS), with
its address space capped so a sequence too long for this machine fails instead of swapping.
Run: python bench/long_documents.py [--sizes 4096,8192,16384] [--dtype int8]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import WORDS, bench_model, peak_rss_gib, print_table

QUERY = "which passage explains how replicas batch requests on a cluster?"
WINDOW_LENGTH = 1024  # max_length of the truncate and chunk rows: ~1k tokens of document per window
MODES = {
    "truncate at 1k": lambda size: {"max_length": WINDOW_LENGTH},
    "whole document": lambda size: {"max_length": size + 512},
    "chunk, 1k windows": lambda size: {
        "max_length": WINDOW_LENGTH,
        "long_documents": {"mode": "chunk", "max_windows": 64},
    },
}


def document(scorer, tokens: int) -> str:
    """Random words until the document has about `tokens` tokens."""
    rng, words = random.Random(tokens), []
    while len(scorer.tokenizer.encode_text(" ".join(words))) < tokens:
        words += [rng.choice(WORDS) for _ in range(200)]
    return " ".join(words)


def measure(size: int, mode: str, dtype: str, threads: int, memory_gib: float) -> dict:
    """One row, in this process: load, warm up, score the document once."""
    limit = int(memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from rerank_core.backends.onnx import OnnxScorer

    scorer = OnnxScorer.open(bench_model(), dtype=dtype, intra_op_threads=threads, **MODES[mode](size))
    doc = document(scorer, size)
    scorer.score([(QUERY, "warm up")])
    prepared = scorer.prepare([(QUERY, doc)])
    start = time.perf_counter()
    try:
        out = scorer.score_prepared([prepared])[0]
    except Exception as exc:  # out of the address space we allowed
        return {"error": f"{type(exc).__name__}: {str(exc)[:80]}", "peak_gib": peak_rss_gib()}
    rows = len(prepared.payload.ids)
    return {
        "seconds": time.perf_counter() - start,
        "peak_gib": peak_rss_gib(),
        "windows": rows if prepared.payload.row_starts is not None else 1,
        "tokens_seen": int(prepared.tokens[0]),
        "cut": int(prepared.truncated[0]),
        "score": float(out.scores[0]),
    }


def main() -> None:
    """Every size × mode in a fresh process; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="4096,8192,16384")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-gib", type=float, default=18.0, help="address space of each measuring process")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.dtype, args.threads, args.memory_gib)))
        return
    bench_model()  # export once, outside the measured processes
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        results = {}
        for mode in MODES:
            command = [sys.executable, __file__, "--one", str(size), mode, "--dtype", args.dtype]
            command += ["--threads", str(args.threads), "--memory-gib", str(args.memory_gib)]
            done = subprocess.run(command, capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            results[mode] = json.loads(lines[-1]) if lines else {"error": f"exit {done.returncode}", "peak_gib": None}
            print(size, mode, results[mode], flush=True)
        whole = results["whole document"].get("seconds")
        for mode, r in results.items():
            seconds = r.get("seconds")
            ratio = seconds / whole if seconds and whole else None
            rows.append(
                [
                    size,
                    mode,
                    seconds if seconds else r.get("error"),
                    ratio,
                    r.get("peak_gib"),
                    r.get("windows"),
                    r.get("tokens_seen"),
                    r.get("cut"),
                    r.get("score"),
                ]
            )
    print_table(
        f"Long documents — 0.6B shape ({args.dtype}), {args.threads} threads; one pair per row, after a warm-up",
        ["doc tokens", "mode", "seconds", "÷ whole", "peak RSS GiB", "windows", "tokens seen", "tokens cut", "score"],
        rows,
    )


if __name__ == "__main__":
    main()
