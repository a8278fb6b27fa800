"""Export a PyTorch checkpoint once into a shared cache: keyed by source, dtype and exporter; safe across processes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..cache_dir import CACHE_ENV, build_once, cache_key, cache_root, entry_label, hub_snapshot, source_identity
from ..cpu import int8_weight_bits
from ..dtypes import Dtype
from ..model_files.manifest import MANIFEST_NAME
from .graph import EXPORTER_VERSION, GPU_GRAPHS, export_checkpoint

log = logging.getLogger(__name__)


def export_key(identity: str, dtype: Dtype, exporter_version: str) -> str:
    """A short stable key for (source, dtype, exporter version)."""
    return cache_key(source=identity, dtype=dtype.value, exporter=exporter_version)


def export_version(dtype: Dtype, *, gpu_layout: str | None) -> str:
    """What made an export of `dtype`, for its cache key: the exporter, the GPU graph's layout, and an int8 graph's
    weight bits (they follow the CPU, and CPUs of both kinds may share one cache)."""
    version = EXPORTER_VERSION + (f"+{gpu_layout}" if gpu_layout else "")
    return version + (f"+w{int8_weight_bits()}" if dtype is Dtype.INT8 else "")


def cached_export(
    src_dir: Path,
    *,
    name: str,
    dtype: Dtype,
    cache_dir: str | os.PathLike | None = None,
    gpu_layout: str | None = None,
) -> Path:
    """The export of checkpoint `src_dir` as `dtype`, made now (once, under a lock) unless the cache has it.

    `gpu_layout` (causal, fused or paged: what the scorer will load) adds that GPU graph of `dtype` (f16/f32), a
    separate cache entry.
    The export is written to a staging folder and renamed into place, so a killed export leaves nothing that
    looks complete; the next caller removes the leftovers and exports again. Nothing is written next to the source.
    """
    root = cache_root(cache_dir)
    if gpu_layout is not None and dtype not in GPU_GRAPHS[gpu_layout][1]:
        gpu_layout = None  # no GPU graph of this dtype (int8): the CPU graph serves
    gpu_graphs = {GPU_GRAPHS[gpu_layout][0]: [dtype]} if gpu_layout else {}
    key = export_key(source_identity(src_dir, memo_dir=root), dtype, export_version(dtype, gpu_layout=gpu_layout))
    snapshot = hub_snapshot(src_dir)
    final = root / f"{entry_label(snapshot[0] if snapshot else src_dir.name, 80)}-{dtype.value}-{key}"

    def export(out: Path) -> None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            raise ImportError(
                f"{name} is a PyTorch checkpoint and exporting it to ONNX needs the export extra: "
                f"pip install 'qwen-rerank[export]' (pins torch==2.13.0); or export it on a machine that has it with "
                f"`rerank export {name} --out DIR` and load DIR"
            ) from None
        log.warning(
            "%s is a PyTorch checkpoint: exporting it to ONNX (%s) once into %s — this takes a few minutes for "
            "Qwen3-Reranker-0.6B; later loads reuse it (cache: $%s)",
            name,
            dtype.value,
            out,
            CACHE_ENV,
        )
        started = time.monotonic()
        export_checkpoint(src_dir, out, dtypes=[dtype], overwrite=True, source_name=name, **gpu_graphs)
        log.warning("export of %s done in %.0f s", name, time.monotonic() - started)

    build_once(final, MANIFEST_NAME, export)  # export_checkpoint stages in `.{final.name}-*` and renames
    return final
