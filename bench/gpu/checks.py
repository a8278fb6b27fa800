"""The GPU checks before any timing: which provider runs each node of our graphs, and parity with the official recipe.

Placement: each graph opened on CUDA with ONNX Runtime's VERBOSE log and `session.disable_cpu_ep_fallback=1` (a node
left on the CPU fails the session), one batch run; the log's "Node placements" counts and its attention-kernel lines.
Parity: a small random model with Qwen's real vocabulary, exported f32 and f16 (GPU graph and past-K/V graph), scored
on CUDA in several batch compositions against the official transformers recipe in f32 on the CPU.

Run by bench/gpu/scoring.py; `python bench/gpu/checks.py placement GRAPH DEVICE` is its child.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.common import BENCH_DIR, mixed_pairs, print_table  # noqa: E402

PARITY_DIR = BENCH_DIR / "gpu-parity-qwen-vocab"
TOLERANCE = {"f32": 1e-4, "f16": 1e-2}
GRAPH_VARIANTS = (
    ("cuda", "GPU graph"),
    ("fused", "fused GPU graph (ONNX Runtime's fused operators)"),
    ("paged", "paged GPU graph (packed tokens, prompts shared in a call)"),
    ("cpu", "past-K/V graph, prefix sharing"),
)
PLACED = re.compile(r"placed on \[(\w+)\]\. Number of nodes: (\d+)")
NODE_LINE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s+(\w+) \([^)]*\)$")
KERNEL_WORDS = re.compile(r"flash|efficient|unfused|cudnn.*attention|attention.*kernel", re.IGNORECASE)


def environment(device: str) -> None:
    """Print the GPU, driver, and the versions every row runs with."""
    import onnxruntime as ort
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none (smoke run on the CPU)"
    driver = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if device == "cuda"
        else "-"
    )
    rows = [
        ["GPU", gpu],
        ["driver, memory", driver],
        ["onnxruntime", f"{ort.__version__} ({', '.join(ort.get_available_providers())})"],
        ["torch", f"{torch.__version__} (CUDA {torch.version.cuda})"],
        ["transformers", transformers.__version__],
        ["python", sys.version.split()[0]],
    ]
    print_table("Environment", ["what", "version"], rows)


def placement_child(graph: str, device: str, strict: bool) -> None:
    """Open `graph` with the VERBOSE log (`strict`: no CPU fallback), run one batch; the log goes to stderr."""
    import onnxruntime as ort

    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.backends.onnx.session import CUDA_OPTIONS, select_providers

    path = Path(graph)
    variant = next((v for v in ("cuda", "fused", "paged") if v in path.name), "cpu")
    dtype = "f16" if "f16" in path.name else "f32"
    scorer = OnnxScorer.open(path.parent, dtype=dtype, graph_variant=variant, device="cpu")
    ort.set_default_logger_severity(0)  # from here on: the session whose placement is checked
    options = ort.SessionOptions()
    options.log_severity_level = 0
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if strict:
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    # Strict: the CUDA provider alone (listing the CPU provider with fallback disabled is refused as a conflict).
    providers = [("CUDAExecutionProvider", CUDA_OPTIONS)] if strict else select_providers(device)
    source = graph
    if device == "cpu" and variant in ("fused", "paged"):  # what the scorer runs off CUDA: standard nodes
        from rerank_core.families.qwen3.cuda_only import standard_equivalent

        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(path.parent))
        source = standard_equivalent(path).SerializeToString()
    scorer.replace_session(ort.InferenceSession(source, sess_options=options, providers=providers))
    scorer.score(mixed_pairs(8, queries=2, max_words=40, seed=5))
    print(f"RESULT providers={scorer.session.get_providers()}", flush=True)


def placement(graphs: list[Path], device: str) -> None:
    """Print where each graph's nodes run: on CUDA strictly (no CPU node) first, and without that if it is refused."""
    rows = []
    for graph in graphs:
        for strict in (True, False) if device == "cuda" else (False,):
            ran, row = _placement_row(graph, device, strict)
            rows.append(row)
            if ran:
                break
    print_table(
        f"Node placement on {device} (strict: session.disable_cpu_ep_fallback=1, a node on the CPU fails the session)",
        ["graph", "strict", "nodes per provider (VERBOSE log)", "session ran", "attention-kernel lines in the log"],
        rows,
    )


def _placement_row(graph: Path, device: str, strict: bool) -> tuple[bool, list]:
    """(the session ran, its table row) for one graph opened in a child process."""
    command = [sys.executable, __file__, "placement", str(graph), device, "strict" if strict else "lenient"]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    log = proc.stderr + proc.stdout
    counts = "; ".join(f"{ep}: {n}" for ep, n in PLACED.findall(log)) or "-"
    if on_cpu := _cpu_nodes(log):
        counts += f" (on the CPU: {', '.join(on_cpu)})"
    kernels = " / ".join(sorted({line.strip()[-120:] for line in log.splitlines() if KERNEL_WORDS.search(line)})[:4])
    ran = "RESULT" in proc.stdout
    why = "" if ran else (proc.stderr.strip().splitlines() or ["no output"])[-1][-200:]
    return ran, [graph.name, "yes" if strict else "no", counts, "yes" if ran else f"no: {why}", kernels or "-"]


def _cpu_nodes(log: str) -> list[str]:
    """The op types the VERBOSE log lists under "placed on [CPUExecutionProvider]"."""
    ops, listing = [], False
    for line in log.splitlines():
        if "placed on [" in line:
            listing = "[CPUExecutionProvider]" in line
        elif listing and (node := NODE_LINE.search(line)):
            ops.append(node.group(1))
        else:
            listing = False
    return ops


def parity_model(smoke: bool) -> tuple[Path, Path]:
    """(checkpoint, export) of the parity model: Qwen's real vocabulary (the tiny one in a smoke run); built once."""
    from rerank_core.export import export_checkpoint
    from rerank_core.model_files.manifest import Manifest
    from rerank_core.tiny_model import build_checkpoint

    root = PARITY_DIR.with_name(PARITY_DIR.name + ("-smoke" if smoke else ""))
    checkpoint, export = root / "ckpt", root / "export"
    if not (checkpoint / "config.json").exists():
        build_checkpoint(checkpoint, vocabulary="tiny" if smoke else "qwen")
    manifest = Manifest.read(export) if export.is_dir() else None
    if not current(manifest):
        both = ["f32", "f16"]
        gpu_graphs = {"cuda_dtypes": both, "fused_dtypes": both, "paged_dtypes": both}
        export_checkpoint(checkpoint, export, dtypes=both, overwrite=True, **gpu_graphs)
    return checkpoint, export


def current(manifest) -> bool:
    """Whether an export's manifest (None: no export) was written by today's exporter."""
    from rerank_core.export.graph import EXPORTER_VERSION

    return manifest is not None and manifest.exporter == EXPORTER_VERSION


def parity_pairs(smoke: bool) -> list[tuple[str, str]]:
    """Pairs whose tokens merge across the template's seams, mixed lengths over a few queries, and short documents
    of two long queries (prompts that fill whole 128-token blocks: the paged graph shares them); a smoke run takes
    a few of each kind (the test suite checks parity itself)."""
    from tests.rerank_core.test_real_vocabulary import SEAM_PAIRS

    mixed, long = (6, 4) if smoke else (54, 8)
    long_queries = mixed_pairs(long, queries=2, min_words=3, max_words=30, seed=12, query_words=(300, 400))
    return list(SEAM_PAIRS) + mixed_pairs(mixed, queries=6, min_words=3, max_words=400, seed=11) + long_queries


def parity(device: str, smoke: bool) -> None:
    """Print max |Δscore| from the official f32 recipe per graph and batch composition, and whether it is in bounds."""
    from rerank_core import Reranker
    from tests.oracle import OfficialRecipe

    checkpoint, export = parity_model(smoke)
    pairs = parity_pairs(smoke)
    reference = OfficialRecipe(checkpoint).score(pairs, batch_size=1)
    compositions = {
        "all at once": lambda r: r.score_pairs(pairs),
        "one pair per call": lambda r: np.concatenate([r.score_pairs([p]) for p in pairs]),
        "reversed order": lambda r: np.asarray(r.score_pairs(pairs[::-1]))[::-1],
    }
    rows = []
    for dtype in ("f16",) if smoke else ("f32", "f16"):  # a smoke run: the f16 graphs (the suite checks f32's parity)
        for variant, label in GRAPH_VARIANTS:
            for budget in (None, 300):
                budget_label = f"token budget {budget}" if budget else "default budget"
                try:
                    reranker = Reranker.from_pretrained(
                        str(export), device=device, dtype=dtype, graph_variant=variant, token_budget=budget
                    )
                    if reranker.scorer.device != device:
                        raise SystemExit(f"parity: the {dtype} {label} runs on {reranker.scorer.device}, not {device}")
                    deltas = {
                        name: float(np.abs(np.asarray(run(reranker)) - reference).max())
                        for name, run in compositions.items()
                    }
                except Exception as exc:  # e.g. an operator this provider lacks for this dtype: say so, go on
                    rows.append(
                        [f"{dtype} {label}", budget_label, "-", f"FAIL: {type(exc).__name__}: {str(exc)[-160:]}"]
                    )
                    continue
                for name, delta in deltas.items():
                    passed = delta <= TOLERANCE[dtype]
                    rows.append([f"{dtype} {label}", f"{name}, {budget_label}", delta, "ok" if passed else "FAIL"])
    print_table(
        f"Parity on {device}: {len(pairs)} pairs, Qwen's real vocabulary, against the official f32 recipe on the CPU "
        f"(bounds: f32 {TOLERANCE['f32']:g}, f16 {TOLERANCE['f16']:g})",
        ["graph", "batch composition", "max |Δscore|", "within bound"],
        rows,
    )


if __name__ == "__main__":
    if sys.argv[1] == "placement":
        if sys.argv[3] == "cuda":
            import torch  # noqa: F401  (loads CUDA's libraries for the provider)
        placement_child(sys.argv[2], sys.argv[3], strict=sys.argv[4] == "strict")
