"""How much of bf16's score error comes from rounding f32 weights, which a checkpoint stored in bf16 never pays.

Qwen publishes Qwen3-Reranker's weights in bf16, so running them in bf16 rounds no weight; the bench model's weights
were f32 until 2026-11-27 (now they are the same draw rounded to bf16), so its earlier bf16 rows counted their
rounding too. On the float32-weight twin of the bench checkpoint, the official recipe (transformers, torch) on the
same pairs three ways: f32; f32 on the weights rounded to bf16 (the rounding alone); and in bf16 (torch's CPU bf16:
every activation stored in bf16 too, a harsher scheme than OpenVINO's; slow on a CPU without bf16 instructions,
`--no-torch-bf16` leaves it out). Max |Δ| and Spearman against the f32 row, and against the f32 row on the rounded
weights: what bf16 compute alone costs, the error a bf16 checkpoint would see.

Run: python bench/bf16_weights.py [--pairs 24] [--threads 2] [--no-torch-bf16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.oracle
from bench.common import bench_checkpoint, cpu_description, mixed_pairs, print_table


def main() -> None:
    """Score the pairs three ways with the official recipe and print the table."""
    import torch
    from scipy.stats import spearmanr

    from tests.oracle import OfficialRecipe

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-torch-bf16", action="store_true", help="leave out the (slow without bf16) bf16 row")
    args = parser.parse_args()
    pairs = mixed_pairs(args.pairs, queries=6)
    recipe = OfficialRecipe(bench_checkpoint(weights="float32"), threads=args.threads)

    def timed(name: str) -> tuple[str, float, np.ndarray]:
        started = time.perf_counter()
        scores = recipe.score(pairs, batch_size=8)
        seconds = time.perf_counter() - started
        print(f"{name}: {seconds:.1f} s", flush=True)
        return name, seconds, scores

    runs = [timed("official recipe, f32")]
    with torch.no_grad():
        for weight in recipe.model.parameters():
            weight.copy_(weight.bfloat16().float())
    runs.append(timed("official recipe, f32 on bf16-rounded weights"))
    if not args.no_torch_bf16:
        recipe.model = recipe.model.to(torch.bfloat16)
        runs.append(timed("official recipe, torch bf16"))
    reference, rounded = runs[0][2], runs[1][2]

    def against(scores: np.ndarray, base: np.ndarray) -> list[str]:
        return [f"{np.abs(scores - base).max():.3g}", f"{spearmanr(scores, base)[0]:.4f}"]

    rows = [[name, f"{s:.1f}", *against(scores, reference), *against(scores, rounded)] for name, s, scores in runs]
    print_table(
        f"bf16 weight rounding vs bf16 compute — {len(pairs)} mixed pairs, scores {reference.min():.3f}–"
        f"{reference.max():.3f} (std {reference.std():.3f}), {cpu_description()}",
        ["row", "seconds", "max |Δ| vs f32", "Spearman vs f32", "max |Δ| vs rounded f32", "Spearman vs rounded f32"],
        rows,
    )


if __name__ == "__main__":
    main()
