"""The exporter: a Hugging Face reranker checkpoint to lean ONNX graphs, int8 quantization, the export cache.

Nothing here imports torch until an export runs (torch is the export extra).
"""

from .graph import CUDA_GRAPH_NAMES, EXPORTER_VERSION, FUSED_GRAPH_NAMES, GRAPH_NAMES, export_checkpoint

__all__ = ["CUDA_GRAPH_NAMES", "EXPORTER_VERSION", "FUSED_GRAPH_NAMES", "GRAPH_NAMES", "export_checkpoint"]
