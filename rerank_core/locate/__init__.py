"""Turn any model name (folder, builtin:NAME, Hub id) into one ModelFolder value, exporting checkpoints once."""

from __future__ import annotations

import os

from ..config import LocalOptions
from ..dtypes import Dtype, choose_dtype, graph_dtype
from ..errors import ModelNotFoundError
from .folder import (
    CHECKPOINT_PATTERNS,
    GPU_LAYOUTS,
    ModelFolder,
    checkpoint_model_type,
    graph_patterns,
    has_weights,
    not_a_model,
)
from .hub import hub_offline, resolve_model_dir

__all__ = ["ModelFolder", "locate_model"]


def locate_model(model_id: str | os.PathLike, options: LocalOptions, device: str) -> ModelFolder:
    """The model folder to load for `model_id`, read once, for `device` ('cpu' or 'cuda').

    A folder or Hub repo with ONNX graphs is used as it is; one holding a Qwen3 PyTorch checkpoint (the official
    Qwen/Qwen3-Reranker-*) is exported once into the export cache, with the GPU graph `graph_variant` names (or, on
    CUDA with `auto`, the causal one), and the export is returned. On the Hub the
    checkpoint's weights are downloaded only when the repo has no graph.
    """
    from ..export.cache import cached_export

    name = os.fspath(model_id)
    where = {"revision": options.revision, "path_in_repo": options.path_in_repo, "cache_dir": options.cache_dir}
    folder = resolve_model_dir(model_id, allow_patterns=graph_patterns(), **where)
    export = ModelFolder.find(folder, name=name)
    if export is not None:
        return export
    if checkpoint_model_type(folder) != "qwen3":
        raise not_a_model(folder, name)
    if not has_weights(folder):  # a Hub repo fetched without weights so far
        folder = resolve_model_dir(model_id, allow_patterns=CHECKPOINT_PATTERNS, **where)
        if not has_weights(folder):
            why = "HF_HUB_OFFLINE is set and the cache lacks them" if hub_offline() else "none were found"
            raise ModelNotFoundError(
                f"{name}: {folder} holds a Qwen3 config but no weights (*.safetensors): {why}. "
                f"Fetch them where there is network (`hf download {name}`) or pass a folder that has them."
            )
    dtype = graph_dtype(options.dtype or choose_dtype((Dtype.F32, Dtype.F16), device))
    variant = options.graph_variant
    gpu_layout = GPU_LAYOUTS.get(variant, "causal" if variant == "auto" and device == "cuda" else None)
    export = cached_export(folder, name=name, dtype=dtype, cache_dir=options.export_cache_dir, gpu_layout=gpu_layout)
    return ModelFolder.read(export, name=name)
