"""Resolution: turn any model name (folder, builtin:NAME, Hub id) into what to load — an export folder, read once, or
a checkpoint to export first (rerank_core.export builds it; rerank_core.api composes the two)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import LocalOptions
from ..dtypes import Dtype, choose_dtype, graph_dtype
from ..errors import ModelFormatError, ModelNotFoundError
from ..families import FAMILIES, model_types
from ..model_files.folder import (
    AN_EXPORT,
    CHECKPOINT_PATTERNS,
    GPU_LAYOUTS,
    ModelFolder,
    config_model_type,
    graph_patterns,
    has_weights,
)
from ..model_files.hub import hub_offline, resolve_model_dir

__all__ = ["Checkpoint", "locate_model"]


@dataclass(frozen=True)
class Checkpoint:
    """A PyTorch checkpoint to export before it is scored: its folder, its name, and the graph to export."""

    path: Path
    name: str
    dtype: Dtype  # f32 or f16 (int8 is exported from f32)
    gpu_layout: str | None  # the GPU graph layout to export beside the CPU graph, where one will be loaded


def locate_model(model_id: str | os.PathLike, options: LocalOptions, device: str) -> ModelFolder | Checkpoint:
    """What to load for `model_id` on `device` ('cpu' or 'cuda'): its export folder, or the checkpoint to export.

    A folder or Hub repo with ONNX graphs is used as it is; one holding a checkpoint of a model family this version
    scores (the official Qwen/Qwen3-Reranker-*) is to be exported, with the GPU graph `graph_variant` names (or, on
    CUDA with `auto`, the causal one). On the Hub the checkpoint's weights are downloaded only when the repo has no
    graph.
    """
    name = os.fspath(model_id)
    where = {"revision": options.revision, "path_in_repo": options.path_in_repo, "cache_dir": options.cache_dir}
    folder = resolve_model_dir(model_id, allow_patterns=graph_patterns(), **where)
    export = ModelFolder.find(folder, name=name)
    if export is not None:
        return export
    model_type = config_model_type(folder)
    if model_type is None or model_type not in model_types():
        raise not_a_model(folder, name, model_type)
    if not has_weights(folder):  # a Hub repo fetched without weights so far
        folder = resolve_model_dir(model_id, allow_patterns=CHECKPOINT_PATTERNS, **where)
        if not has_weights(folder):
            why = "HF_HUB_OFFLINE is set and the cache lacks them" if hub_offline() else "none were found"
            raise ModelNotFoundError(
                f"{name}: {folder} holds a {model_type} config but no weights (*.safetensors): {why}. "
                f"Fetch them where there is network (`hf download {name}`) or pass a folder that has them."
            )
    dtype = graph_dtype(options.dtype or choose_dtype((Dtype.F32, Dtype.F16), device))
    variant = options.graph_variant
    gpu_layout = GPU_LAYOUTS.get(variant, "causal" if variant == "auto" and device == "cuda" else None)
    return Checkpoint(folder, name, dtype, gpu_layout)


def not_a_model(folder: Path, name: str, model_type: str | None) -> ModelFormatError:
    """The error for a folder that is neither an export nor a checkpoint of a family this version scores: what was
    found, what is expected."""
    names = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
    found = f"files {names}" if names else "no files"
    if model_type is not None:
        found += f" (config.json says model_type={model_type!r})"
    checkpoints = " or ".join(family.checkpoint for family in FAMILIES)
    return ModelFormatError(f"{name}: {folder} holds {found}; expected {AN_EXPORT} or {checkpoints}")
