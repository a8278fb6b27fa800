"""The GPU benches: every one runs from bench/gpu/run.sh on a GPU box (docs/gpu.md), and in smoke mode on a CPU."""
