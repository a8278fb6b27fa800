"""Qwen3-VL-Reranker: the official recipe (transformers, one pair per forward, tests/oracle_vl.py) against ours, at
Qwen3-VL-Reranker-2B's shape (random weights, Qwen's vocabulary), on (a) a text query against 8 screenshot-size images
(1280×720 and 800×1000), (b) an image query against 16 texts, (c) a mix of both. Each row runs in a fresh process,
the scenarios one after another in it (each with images no other scenario or warm-up has shown); columns: pairs/s per
scenario, × the recipe, peak memory, max |Δscore| and Spearman against the recipe in f32 (random weights: a proxy
for the error of int8, bf16 and f16 only).

On a CPU (default): the recipe in f32 against ours in f32 and int8 (and bf16 where the CPU multiplies it), each with
the vision encoder's default dtype for it; a row `ours-<dtype>-encoder-<f32|int8|bf16>` names the encoder's
(`images.encoder_dtype`). With
`--device cuda` (bench/gpu/run.sh's `vl` section): the recipe in f32 (the reference) and bf16 on the GPU against ours
on CUDA, the f16 decoder graph beside the f32 vision graph; without a GPU it says so and exits 0. `--smoke`: the tiny
model and small images on the CPU, to check the bench runs (any `--device`).

Run: python bench/vl.py [--threads 2] [--rows recipe,ours-f32,ours-int8,ours-bf16-encoder-f32] [--device cpu|cuda]
     [--scenarios a,b,c] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import BENCH_DIR, cpu_description, print_table  # noqa: E402
from bench.gpu.scoring import device_or_none  # noqa: E402
from bench.gpu.usage import Usage  # noqa: E402
from rerank_core.dtypes import Dtype, graph_dtype  # noqa: E402

CHECKPOINT = BENCH_DIR / "qwen3-vl-2b-shape-hf"
EXPORTS = {"cpu": BENCH_DIR / "qwen3-vl-2b-shape", "cuda": BENCH_DIR / "qwen3-vl-2b-shape-gpu"}
DEFAULT_ROWS = {"cpu": "recipe,ours-f32,ours-int8", "cuda": "recipe,recipe-bf16,ours-f16"}
WORDS = "revenue chart quarter slide table figure screenshot invoice total product photo red blue page report".split()


def bench_vl_model(smoke: bool, device: str, dtypes: set[str]) -> tuple[Path, Path]:
    """(checkpoint, export): the 2B-shape random checkpoint and our export of it holding `dtypes`' decoder graphs (one
    folder per device), built once and cached (`--smoke`: the tiny model)."""
    from rerank_core.export import export_checkpoint
    from rerank_core.model_files.manifest import Manifest
    from rerank_core.tiny_vl_model import build_vl_checkpoint

    checkpoint, export = (BENCH_DIR / "vl-smoke-hf", BENCH_DIR / "vl-smoke") if smoke else (CHECKPOINT, EXPORTS[device])
    if not (checkpoint / "config.json").is_file():
        print(f"building the {'tiny' if smoke else '2B-shape'} random checkpoint into {checkpoint} ...", flush=True)
        build_vl_checkpoint(checkpoint, full_size=not smoke)
    have = (
        {g.dtype.value for g in Manifest.read(export).graphs} if (export / "rerank_manifest.json").is_file() else set()
    )
    if not dtypes <= have:
        print(f"exporting it ({', '.join(sorted(dtypes | have))}) into {export} ...", flush=True)
        export_checkpoint(checkpoint, export, dtypes=sorted(dtypes | have), overwrite=True)
    return checkpoint, export


def picture(width: int, height: int, seed: int) -> bytes:
    """A PNG of a screenshot-like picture: blocks of flat colour with noisy 'text' lines."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 245, dtype=np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, height - 20), rng.integers(0, width - 40)
        pixels[y : y + rng.integers(10, 120), x : x + rng.integers(40, 400)] = rng.integers(0, 256, 3)
    rows = rng.integers(0, height, 40)
    pixels[rows] = rng.integers(0, 120, (len(rows), width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def text(seed: int, words: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=words))


def scenarios(smoke: bool) -> dict[str, list]:
    """Each scenario's pairs, as the recipe takes them ({"text": [...], "image": [...]} sides; images as PNG bytes)."""
    big, tall = ((128, 72), (80, 100)) if smoke else ((1280, 720), (800, 1000))
    query_image = (64, 48) if smoke else (640, 480)
    count = 2 if smoke else 1
    screenshots = [picture(*(big if k % 2 else tall), 100 + k) for k in range(8 // count)]
    a = [({"text": ["which slide shows the quarterly revenue chart?"]}, {"image": [s]}) for s in screenshots]
    photo = picture(*query_image, 200)
    b = [({"image": [photo]}, {"text": [text(300 + k, 40 + 5 * k)]}) for k in range(16 // count)]
    mixed = [{"image": [picture(*big, 400 + k)]} for k in range(2)] + [{"text": [text(500 + k, 60)]} for k in range(3)]
    mixed += [{"text": [text(600, 30)], "image": [picture(*tall, 601)]}]
    c = [({"text": ["total of the invoice"]}, d) for d in mixed]
    c += [
        ({"image": [picture(*query_image, 700)], "text": ["this product"]}, {"text": [text(800 + k, 50)]})
        for k in range(2)
    ]
    return {"a: text → 8 screenshots": a, "b: image → 16 texts": b, "c: mix": c}


def ours_dtypes(row: str) -> tuple[str, str | None]:
    """An `ours-<dtype>[-encoder-<dtype>]` row's decoder and vision encoder dtypes (None: the encoder's default, which
    follows the decoder's)."""
    dtype, _, encoder = row.removeprefix("ours-").partition("-encoder-")
    return dtype, encoder or None


def chosen(all_scenarios: dict[str, list], letters: str) -> dict[str, list]:
    """The scenarios whose letters `letters` lists ("a,c"), in their order."""
    wanted = set(letters.split(","))
    if unknown := wanted - {name[0] for name in all_scenarios}:
        raise SystemExit(f"--scenarios: unknown {sorted(unknown)}; the scenarios are a, b, c")
    return {name: pairs for name, pairs in all_scenarios.items() if name[0] in wanted}


def default_rows(device: str) -> str:
    """The rows run unless --rows names others: on a CPU that computes bf16, ours in bf16 too."""
    from rerank_core.backends.onnx.openvino_session import bf16_available

    return DEFAULT_ROWS[device] + (",ours-bf16" if device == "cpu" and bf16_available() else "")


def warm_up_pair() -> tuple:
    return ({"text": ["warm up"]}, {"image": [picture(96, 64, 999)], "text": ["not timed"]})


def _decoded(side: dict) -> dict:
    from PIL import Image

    return {**side, "image": [Image.open(io.BytesIO(data)) for data in side.get("image", [])]}


def run_row(spec: dict) -> dict:
    """In a fresh process: load the row, warm it up, time each scenario; peak RSS at the end."""
    row, threads, device = spec["row"], spec["threads"], spec["device"]
    started = time.perf_counter()
    if row.startswith("recipe"):
        import torch

        from tests.oracle_vl import OfficialVLRecipe

        torch.set_num_threads(threads)
        dtype = {"recipe": "float32", "recipe-bf16": "bfloat16"}[row]
        recipe = OfficialVLRecipe(spec["checkpoint"], device=device, dtype=dtype)

        def score(pairs):  # the recipe takes PIL images (its fetch_image decodes what it is given the same way)
            return recipe.score([tuple(_decoded(side) for side in pair) for pair in pairs])
    else:
        from rerank_core import Reranker

        dtype, encoder = ours_dtypes(row)
        reranker = Reranker.from_pretrained(
            spec["export"],
            dtype=dtype,
            device=device,
            intra_op_threads=threads,
            images={"encoder_dtype": encoder},
        )
        if reranker.scorer.device != device:  # a CPU timing must not pass for a GPU one
            raise SystemExit(f"ours runs on {reranker.scorer.device}, not {device}")

        def score(pairs):
            return reranker.score_pairs(pairs)

    load_s = time.perf_counter() - started
    score([warm_up_pair()])
    results = {}
    for name, pairs in chosen(scenarios(spec["smoke"]), spec["scenarios"]).items():
        started = time.perf_counter()
        scores = score(pairs)
        results[name] = {"seconds": time.perf_counter() - started, "scores": [float(s) for s in scores]}
    peak = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return {"load_s": load_s, "scenarios": results, "peak_rss_gib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rows",
        help=f"default: {DEFAULT_ROWS['cpu']}[,ours-bf16] (CPU; bf16 where it computes bf16); {DEFAULT_ROWS['cuda']}",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--scenarios", default="a,b,c", help="which to run, by letter (default: a,b,c)")
    parser.add_argument("--smoke", action="store_true", help="the tiny model and small images: checks the bench runs")
    parser.add_argument("--row-spec", help=argparse.SUPPRESS)  # a child process: the row to run, as JSON
    args = parser.parse_args()
    if args.row_spec:
        print("RESULT " + json.dumps(run_row(json.loads(args.row_spec))), flush=True)
        return
    rows = (args.rows or default_rows(args.device)).split(",")
    names = list(chosen(scenarios(args.smoke), args.scenarios))  # an unknown letter refused before any row runs
    found = device_or_none("bench/vl.py", args.smoke) if args.device == "cuda" else ("cpu", cpu_description())
    if found is None:
        return
    device, machine = found
    # bf16 computes the f32 graph: the export needs the graph files the rows' dtypes run.
    dtypes = {graph_dtype(Dtype.parse(ours_dtypes(row)[0])).value for row in rows if row.startswith("ours-")}
    checkpoint, export = bench_vl_model(args.smoke, args.device, dtypes)
    spec = {
        "checkpoint": str(checkpoint),
        "export": str(export),
        "threads": args.threads,
        "smoke": args.smoke,
        "scenarios": args.scenarios,
    }
    results = {}
    for row in rows:
        print(f"running {row} ...", flush=True)
        with Usage(gpu=device == "cuda", interval_s=0.05) as usage:
            child = subprocess.run(
                [sys.executable, __file__, "--row-spec", json.dumps({**spec, "row": row, "device": device})],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
        line = next((x for x in child.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{row} failed:\n{child.stderr[-3000:]}", flush=True)
            continue
        results[row] = {**json.loads(line.removeprefix("RESULT ")), "peak_gpu_mib": usage.peak_memory_mib}
    print_rows(results, names, args, device, "smoke: tiny model" if args.smoke else machine)


def print_rows(results: dict, names: list[str], args: argparse.Namespace, device: str, machine: str) -> None:
    from scipy.stats import spearmanr

    base = results.get("recipe")
    rows = []
    for row, result in results.items():
        cells = [row]
        for name in names:
            part = result["scenarios"][name]
            rate = len(part["scores"]) / part["seconds"]
            ratio = ""
            if base is not None:
                base_part = base["scenarios"][name]
                ratio = f" ({rate / (len(base_part['scores']) / base_part['seconds']):.2f}×)"
            cells.append(f"{rate:.3f}{ratio}")
        if base is not None:
            ours = np.concatenate([result["scenarios"][n]["scores"] for n in names])
            want = np.concatenate([base["scenarios"][n]["scores"] for n in names])
            cells += [f"{np.abs(ours - want).max():.1e}", f"{spearmanr(ours, want).statistic:.4f}"]
        else:
            cells += ["-", "-"]
        cells += [f"{result['load_s']:.0f}", f"{result['peak_rss_gib']:.1f}"]
        if device == "cuda":
            cells.append(f"{result['peak_gpu_mib']:.0f}")
        rows.append(cells)
    header = [
        "row",
        *[f"{n} pairs/s (× recipe)" for n in names],
        "max |Δ| vs recipe f32",
        "Spearman",
        "load s",
        "peak RSS GiB",
        *(["peak GPU MiB"] if device == "cuda" else []),
    ]
    where = f"{args.threads} threads" if device == "cpu" else "CUDA"
    print_table(f"Qwen3-VL-Reranker-2B shape, {where} ({machine})", header, rows)


if __name__ == "__main__":
    main()
