"""bench/gpu/run.sh, the GPU box's one run, on the CPU: its offline bundle joined, checked and unpacked from pieces
(bench/gpu/bundle.py packs them), every section run in smoke mode, and a missing or damaged piece named."""

import os
import subprocess
import sys

import pytest

from bench.gpu.bundle import pack
from tests.conftest import REPO

PIECE_BYTES = 100_000


@pytest.fixture
def bundle(tmp_path):
    """A bundle of one small package, packed by the real packer into pieces of at most PIECE_BYTES."""
    package = tmp_path / "site-source" / "bundle_probe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("WHERE = 'the bundle'\n")
    (package / "weights.bin").write_bytes(os.urandom(3 * PIECE_BYTES))  # incompressible: several pieces
    pieces = pack(package.parent, tmp_path / "gpu-bundle", PIECE_BYTES)
    assert len(pieces) == 4 and all(p.stat().st_size <= PIECE_BYTES for p in pieces)
    return tmp_path / "gpu-bundle", pieces


@pytest.fixture
def bench_models(tmp_path, tiny_checkpoint, tiny_export, tiny_vl_checkpoint, tiny_vl_export_all):
    """The smoke run's models, the session's tiny ones, whose exports hold every graph the run loads, so it builds
    none of its own: bench/gpu/checks.py's parity model and bench/vl.py's."""
    root = tmp_path / "bench-models" / "gpu-parity-qwen-vocab-smoke"
    root.mkdir(parents=True)
    (root / "ckpt").symlink_to(tiny_checkpoint)
    (root / "export").symlink_to(tiny_export)
    (root.parent / "vl-smoke-hf").symlink_to(tiny_vl_checkpoint)
    (root.parent / "vl-smoke").symlink_to(tiny_vl_export_all)
    return root.parent


def run(tmp_path, bundle_dir, *args):
    """bench/gpu/run.sh with `args`, its bundle, site and bench models under tmp_path."""
    env = {
        **os.environ,
        "GPU_BUNDLE": str(bundle_dir),
        "GPU_SITE": str(tmp_path / "site"),
        "RERANK_BENCH_DIR": str(tmp_path / "bench-models"),
        "PYTHON": sys.executable,
    }
    command = ["bash", "bench/gpu/run.sh", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_smoke_run_unpacks_the_bundle_first_on_the_path_and_runs_every_section(tmp_path, bundle, bench_models):
    bundle_dir, pieces = bundle
    proc = run(tmp_path, bundle_dir, "--smoke")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"bundle: {len(pieces)} pieces joined, checked and unpacked into {tmp_path / 'site'}" in proc.stdout
    summary = proc.stdout.split("== summary")[1]
    assert all(f"{section}: ok" in summary for section in ("prepare", "gpu", "serve", "offline", "vl")), summary
    assert "| f16 GPU graph | all at once, default budget |" in proc.stdout  # the parity table
    assert "| f16 fused GPU graph (ONNX Runtime's fused operators) | all at once, default budget |" in proc.stdout
    paged = [line for line in proc.stdout.splitlines() if line.startswith("| f16 paged GPU graph")]
    assert len(paged) == 6 and all(line.endswith("| ok |") for line in paged), paged  # 3 compositions × 2 budgets
    assert "### ~30-token documents, ~300-token queries: 8 pairs" in proc.stdout
    speed = [line for line in proc.stdout.splitlines() if line.startswith("| ours, f16 paged GPU graph")]
    assert len(speed) == 2 * 4 and not any("not run" in line for line in speed), speed  # sharing on/off × 4 mixes
    assert "| interactive alone | 8–20 docs |" in proc.stdout and "interactive p95 mixed / alone" in proc.stdout
    assert "| the scorer alone (one process, the whole device) |" in proc.stdout
    vl = [line for line in proc.stdout.splitlines() if line.startswith(("| recipe", "| ours-f16 |"))]
    assert [line.split("|")[1].strip() for line in vl] == ["recipe", "recipe-bf16", "ours-f16"], vl
    probe = subprocess.run(
        [sys.executable, "-c", "import bundle_probe; print(bundle_probe.WHERE)"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "the bundle"
    again = run(tmp_path, bundle_dir, "--smoke", "--only", "none")
    assert again.returncode == 0 and f"bundle: {len(pieces)} pieces already unpacked" in again.stdout
    assert "serve: skipped (not in --only none)" in again.stdout  # says what it skipped, and why
    assert "packages: not checked (no section selected by --only none)" in again.stdout


def test_a_missing_or_damaged_piece_is_named_and_fails_the_run(tmp_path, bundle):
    bundle_dir, pieces = bundle
    damaged = bytearray(pieces[1].read_bytes())
    damaged[10] ^= 0xFF
    pieces[1].write_bytes(bytes(damaged))
    proc = run(tmp_path, bundle_dir, "--smoke", "--only", "none")
    assert proc.returncode == 1
    assert f"bundle: {pieces[1].parent} does not match its checksum" in proc.stdout
    for f in pieces[3].parent.iterdir():
        f.unlink()
    pieces[3].parent.rmdir()
    proc = run(tmp_path, bundle_dir, "--smoke", "--only", "none")
    assert proc.returncode == 1 and "bundle: 3 of 4 pieces" in proc.stdout
    assert not (tmp_path / "site").exists()
