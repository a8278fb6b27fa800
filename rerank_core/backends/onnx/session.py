"""Sessions: which device and runtime (ONNX Runtime's providers, or OpenVINO for bf16), and the options every graph
is opened with."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from ...cpu import EXACT_INT8_WEIGHT_BITS, multiplies_int8_exactly
from ...device import resolve_device
from ...dtypes import Dtype
from ...errors import ConfigError
from ...graph_layout import NO_PREFIX, GraphLayout, session_device
from ...model_files.folder import GraphFile
from ...planning import Batch
from .memory import cuda_memory_options, use_cpu_arena
from .openvino_session import NO_BF16, OpenVinoSession, bf16_available, cpu_runs_bf16

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
    raise ImportError("the ONNX backend needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from exc

log = logging.getLogger(__name__)


# TF32 off: an f32 graph scores in f32 (the CUDA provider's default rounds f32 matmuls to TF32); f16 never uses it.
CUDA_OPTIONS = {"use_tf32": "0"}


def select_providers(device: str, memory_limit_mib: int | None = None) -> list:
    """ONNX Runtime providers for `device` ('auto', 'cpu' or 'cuda'); CUDA only where this install has it, its arena
    capped at `memory_limit_mib`."""
    if resolve_device(device) == "cuda":
        _load_cuda_libraries()
        return [("CUDAExecutionProvider", CUDA_OPTIONS | cuda_memory_options(memory_limit_mib)), "CPUExecutionProvider"]
    if device == "cuda":
        log.warning("device=cuda but this onnxruntime has no CUDA provider (install onnxruntime-gpu); using CPU")
    return ["CPUExecutionProvider"]


@functools.cache
def _load_cuda_libraries() -> None:
    """Once per process: load CUDA and cuDNN from the pip `nvidia-*` packages (torch's) where installed."""
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is not None:
        preload()


def open_session(
    graph: Path,
    device: str,
    intra_op_threads: int | None,
    memory_limit_mib: int | None = None,
    model=None,
) -> ort.InferenceSession:
    """A session over `graph` (or `model`, that graph's ModelProto rewritten, its weights in the graph's folder) on
    `device`, every optimisation on, idle threads yielding instead of spinning, its memory arena capped at
    `memory_limit_mib` where given."""
    providers = select_providers(device, memory_limit_mib)
    options = ort.SessionOptions()
    if memory_limit_mib is not None and providers[0] == "CPUExecutionProvider":
        use_cpu_arena(options, memory_limit_mib)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    # Idle threads yield instead of spinning: no slower here (docs/benchmarks.md, ONNX Runtime knobs), and the CPU
    # goes to Ray's proxy and raylet instead of a busy-wait.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if model is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(graph.parent))
    source = str(graph) if model is None else model.SerializeToString()
    session = ort.InferenceSession(source, sess_options=options, providers=providers)
    if providers[0] != "CPUExecutionProvider" and session_device(session) != "cuda":
        log.warning("the CUDA provider could not start (no GPU or driver?); running on CPU")
    return session


# What the faster CPU dtypes measured against our f32 on the 0.6B shape, 2 threads, 48 mixed pairs (docs/benchmarks.md:
# AMD Zen 4 with AVX512-BF16, an Intel Xeon with AMX): said when a model loads in f32 where one of them is available.
FASTER_ON_CPU = {
    Dtype.BF16: "2.5-2.8x the pairs/s at Spearman 0.998-0.999 against f32 (scores move by up to ~0.004)",
    Dtype.INT8: "2.0-2.8x the pairs/s at Spearman 0.987-0.996 against f32 (scores move by up to ~0.025)",
}


def choose_precision(requested: Dtype | None, device: str, field: str = "dtype") -> Dtype | None:
    """For a scorer that asked for `requested` (by option `field`) on `device` ('cpu' or 'cuda'): the dtype to choose
    its graph by.

    Not asked for (dtype None): the device's exact default, f32 on every CPU. Asked for bf16: bf16 on a CPU whose
    instructions multiply it (OpenVINO must be installed; the f32 graph serves as the bf16 one), else f32 after one
    log line saying why.
    """
    if requested is not Dtype.BF16:
        return requested
    if device != "cpu":
        raise ConfigError(
            f"{field}: bf16 is the CPU path (OpenVINO on AMX-BF16 or AVX512-BF16): set device: cpu, or another {field}"
        )
    if cpu_runs_bf16():
        return Dtype.BF16
    log.warning("%s bf16: %s; running the f32 graph in f32", field, NO_BF16)
    return Dtype.F32


def companion_dtype(asked: Dtype | None, scored: Dtype, device: str) -> Dtype:
    """The dtype a graph beside the scored one runs in on `device` ('cpu' or 'cuda'): `asked`, else following the
    scored graph's dtype — bf16 beside bf16, and beside int8 on a CPU that computes bf16 (a bf16 vision encoder moved
    scores far less than either decoder: docs/models.md, Precisions), f32 otherwise (exact beside f32 and f16)."""
    if asked is not None:
        return asked
    if scored is Dtype.BF16 or (scored is Dtype.INT8 and device == "cpu" and bf16_available()):
        return Dtype.BF16
    return Dtype.F32


def open_companion(
    graph: Path,
    asked: Dtype | None,
    field: str,
    *,
    scored: Dtype,
    device: str,
    intra_op_threads: int | None,
    cache_dir: str | None = None,
    memory_limit_mib: int | None = None,
):
    """A graph beside the scored one (a family's vision encoder), in the dtype option `field` asked (None: as
    companion_dtype follows the `scored` graph's): bf16 computes this f32 graph on OpenVINO (where the CPU multiplies
    bf16, else f32 as choose_precision says), any other dtype runs on ONNX Runtime with the scorer's device, threads
    and arena cap."""
    where = resolve_device(device)
    if choose_precision(companion_dtype(asked, scored, where), where, field) is Dtype.BF16:
        return _open_bf16(
            graph, f"beside the {scored.value} graph ({field})", intra_op_threads, cache_dir, memory_limit_mib
        )
    return open_session(graph, device, intra_op_threads, memory_limit_mib)


def _open_bf16(
    graph: Path, why: str, intra_op_threads: int | None, cache_dir: str | None, memory_limit_mib: int | None
):
    """f32 `graph` computed in bf16 on OpenVINO (its IR cached under `cache_dir`), one info line saying `why`."""
    log.info("%s: bf16 on OpenVINO %s", graph.name, why)
    if memory_limit_mib is not None:
        log.warning("memory_limit_mib caps ONNX Runtime's arena; bf16 runs on OpenVINO, which it does not cap")
    return OpenVinoSession.open(graph, precision="bf16", threads=intra_op_threads, cache_dir=cache_dir)


def faster_dtypes(graph_dtypes: set[Dtype]) -> dict[Dtype, str]:
    """The dtypes faster than f32 that a CPU scorer could load here (bf16 where this CPU multiplies it and OpenVINO
    is installed, int8 where the folder has that graph), each with what it measured."""
    available = {Dtype.INT8} & graph_dtypes
    if Dtype.F32 in graph_dtypes and bf16_available():
        available.add(Dtype.BF16)
    return {dtype: FASTER_ON_CPU[dtype] for dtype in FASTER_ON_CPU if dtype in available}


def open_graph(
    graph: GraphFile,
    layout: type[GraphLayout] | None,
    device: str,
    intra_op_threads: int | None,
    cache_dir: str | None = None,
    memory_limit_mib: int | None = None,
):
    """A session running `graph` (of `layout`; None: not known before it opens): OpenVINO computing in bf16 for
    dtype bf16 (its IR cached under `cache_dir`), else ONNX Runtime on `device` with its arena capped at
    `memory_limit_mib`."""
    if graph.dtype is Dtype.BF16:
        return _open_bf16(graph.path, "(this CPU multiplies bf16)", intra_op_threads, cache_dir, memory_limit_mib)
    if graph.weight_bits == EXACT_INT8_WEIGHT_BITS and not multiplies_int8_exactly():
        log.warning(
            "%s holds 8-bit weights (exported on a CPU with VNNI or AMX); this CPU has neither, and its int8 products "
            "saturate, which can move scores by ~0.2: export int8 on this machine (rerank export SRC --out DIR "
            "--dtype int8 writes 7-bit weights here)",
            graph.path.name,
        )
    if layout is not None and layout.cuda_only:
        return _open_cuda_only(graph, layout, device, intra_op_threads, memory_limit_mib)
    return open_session(graph.path, device, intra_op_threads, memory_limit_mib)


def _open_cuda_only(
    graph: GraphFile, layout: type[GraphLayout], device: str, intra_op_threads: int | None, memory_limit_mib: int | None
):
    """A graph with CUDA-only operators (Qwen3's `fused`, `paged`) runs as written where they land on CUDA (f16
    there); elsewhere — CPU, or f32, which CUDA's kernels do not take — they run as standard nodes."""
    args = (graph.path, device, intra_op_threads, memory_limit_mib)
    if graph.dtype is Dtype.F16 and resolve_device(device) == "cuda":
        session = open_session(*args)
        if session_device(session) == "cuda" and runs_cuda_only_graph(session, graph, layout):
            return session
    return open_session(*args, model=layout.standard_form(graph.path))


def runs_cuda_only_graph(session: ort.InferenceSession, graph: GraphFile, layout: type[GraphLayout]) -> bool:
    """Whether `session` scores one short row of a graph with CUDA-only operators; if its provider refuses a node (as
    CPU does the fused q/k norms), one warning says so and the caller runs the standard form instead."""
    row = Batch(np.zeros(1, np.int64), np.zeros((1, 4), np.int64), np.ones((1, 4), np.int64))
    try:
        layout(session, 0, 1).run(row, NO_PREFIX)
    except Exception as exc:  # ONNX Runtime raises its own error types, one per status code
        log.warning(
            "%s: this ONNX Runtime refused a fused node (%s); running its CUDA-only parts as standard nodes",
            graph.path.name,
            str(exc).splitlines()[0][-300:],
        )
        return False
    return True
