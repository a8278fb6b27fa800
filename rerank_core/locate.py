"""Turn any model name (folder, builtin:NAME, Hub id) into an ONNX folder and dtype, exporting checkpoints once."""

from __future__ import annotations

import os
from pathlib import Path

from .dtypes import Dtype, choose_dtype
from .errors import ModelNotFoundError
from .export_cache import cached_export
from .hub import hub_offline, resolve_model_dir
from .model_files import CHECKPOINT_PATTERNS, available_graphs, checkpoint_model_type, graph_patterns, has_weights
from .model_files import not_a_model


def locate_onnx_model(
    model_id: str | os.PathLike,
    *,
    device: str,
    dtype: Dtype | None = None,
    revision: str | None = None,
    path_in_repo: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    export_cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, Dtype]:
    """The folder holding the graph to load and its dtype (None: the best the folder has for `device`).

    A folder or Hub repo with ONNX graphs is used as it is; one holding a Qwen3 PyTorch checkpoint (the official
    Qwen/Qwen3-Reranker-*) is exported once into the export cache, and the export is returned. On the Hub the
    checkpoint's weights are downloaded only when the repo has no graph.
    """
    name = os.fspath(model_id)
    where = {"revision": revision, "path_in_repo": path_in_repo, "cache_dir": cache_dir}
    folder = resolve_model_dir(model_id, allow_patterns=graph_patterns(), **where)
    graphs = available_graphs(folder)
    if graphs:
        return folder, dtype or choose_dtype(graphs, device)
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
    dtype = dtype or (Dtype.F16 if device == "cuda" else Dtype.F32)
    export = cached_export(folder, name=name, dtype=dtype, cache_dir=export_cache_dir, gpu_graph=device == "cuda")
    return export, dtype
