"""The local backend: Qwen3-Reranker graphs on ONNX Runtime, one adapter per graph layout."""

from .scorer import OnnxQwen3Scorer
from .session import cuda_available, resolve_device, select_providers

__all__ = ["OnnxQwen3Scorer", "cuda_available", "resolve_device", "select_providers"]
