"""The local backend: our ONNX graphs on ONNX Runtime (OpenVINO for bf16), of any model family."""

from ...device import cuda_available, resolve_device
from .scorer import OnnxScorer
from .session import select_providers

__all__ = ["OnnxScorer", "cuda_available", "resolve_device", "select_providers"]
