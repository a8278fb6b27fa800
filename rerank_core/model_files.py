"""What a model folder holds: ONNX graphs (ours or third-party), a Qwen3 PyTorch checkpoint, or neither."""

from __future__ import annotations

import json
from pathlib import Path

from .dtypes import GRAPH_CANDIDATES, Dtype
from .errors import ModelFormatError
from .manifest import Manifest

# What the exporter reads from a Hugging Face checkpoint (and all a Hub download of one needs to fetch).
CHECKPOINT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "tokenizer*")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def graph_patterns() -> list[str]:
    """Hub download patterns for an ONNX export of any dtype: json files and every graph we can load."""
    return ["*.json", *(f"{name}*" for names in GRAPH_CANDIDATES.values() for name in names)]


def available_graphs(folder: Path) -> dict[Dtype, Path]:
    """The graph file per dtype that `folder` holds: the manifest's when there is one, else the known names."""
    manifest = Manifest.read(folder)
    if manifest is not None:
        return {Dtype(d): folder / name for d, name in manifest.graphs.items() if (folder / name).is_file()}
    found = {}
    for dtype, names in GRAPH_CANDIDATES.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            found[dtype] = path
    return found


def checkpoint_model_type(folder: Path) -> str | None:
    """`model_type` from a Hugging Face config.json in `folder`, or None when there is none."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None


def has_weights(folder: Path) -> bool:
    """True when `folder` holds PyTorch weights (safetensors or pytorch_model*.bin)."""
    return any(next(folder.glob(p), None) is not None for p in WEIGHT_PATTERNS)


def not_a_model(folder: Path, what: str) -> ModelFormatError:
    """The error for a folder that is neither an export nor a Qwen3 checkpoint: what was found, what is expected."""
    names = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
    model_type = checkpoint_model_type(folder)
    found = f"files {names}" if names else "no files"
    if model_type is not None and model_type != "qwen3":
        found += f" (config.json says model_type={model_type!r})"
    return ModelFormatError(
        f"{what}: {folder} holds {found}; expected an ONNX export (model.onnx or model_int8.onnx/model_f16.onnx "
        "with tokenizer.json, as `rerank export` writes) or a Qwen3 checkpoint (config.json with model_type "
        "'qwen3', *.safetensors and tokenizer files, like Qwen/Qwen3-Reranker-0.6B)"
    )
