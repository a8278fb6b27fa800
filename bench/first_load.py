"""First and second load of a Qwen3-Reranker-0.6B-shape PyTorch checkpoint (random weights): export once, then reuse.

Each load runs in a fresh process against an empty export cache (first) and the cache it filled (second), so the
times are what a user sees on `Reranker.from_pretrained(CHECKPOINT)`, scoring one pair included.

Run: python bench/first_load.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_checkpoint, print_table

_LOAD = (
    "import sys\n"
    "from rerank_core import Reranker\n"
    "r = Reranker.from_pretrained(sys.argv[1], export_cache_dir=sys.argv[2])\n"
    "print(r.score_pairs([('What is ML?', 'ML learns from data.')])[0])\n"
)


def timed_load(checkpoint: Path, cache: Path) -> float:
    """Seconds for a fresh process to load the checkpoint through the export cache and score one pair."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _LOAD, str(checkpoint), str(cache)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    """Time a first (exporting) and a second (cached) load, print the table."""
    checkpoint = bench_checkpoint()
    with tempfile.TemporaryDirectory() as cache:
        first = timed_load(checkpoint, Path(cache))
        second = timed_load(checkpoint, Path(cache))
        size = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()) / 2**30
    print_table(
        "Loading the Qwen3-Reranker-0.6B-shape checkpoint (f32 export on a CPU), fresh process each",
        ["load", "seconds", "export cache GiB"],
        [
            ["first: export to ONNX, then load", first, size],
            ["second: reuse the cached export (source hash remembered)", second, size],
        ],
    )


if __name__ == "__main__":
    main()
