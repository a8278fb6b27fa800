"""The exporter: a Hugging Face Qwen3-Reranker checkpoint to lean ONNX graphs, int8 quantization, the export cache.

Nothing here imports torch until an export runs (torch is the export extra).
"""

from .graph import CUDA_GRAPH_NAMES, EXPORTER_VERSION, FUSED_GRAPH_NAMES, GRAPH_NAMES, export_checkpoint, kv_names

__all__ = [
    "CUDA_GRAPH_NAMES",
    "EXPORTER_VERSION",
    "FUSED_GRAPH_NAMES",
    "GRAPH_NAMES",
    "export_checkpoint",
    "kv_names",
]
