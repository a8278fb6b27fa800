"""Which device a model runs on: CUDA where this ONNX Runtime build has it, else the CPU."""

from __future__ import annotations

import onnxruntime as ort


def cuda_available() -> bool:
    """True when this onnxruntime build has the CUDA provider (onnxruntime-gpu)."""
    return "CUDAExecutionProvider" in ort.get_available_providers()


def resolve_device(device: str) -> str:
    """'cuda' or 'cpu' for a device setting of 'auto', 'cpu' or 'cuda' (cuda without CUDA falls back to CPU)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    return "cuda" if device != "cpu" and cuda_available() else "cpu"
