"""qwen-rerank core library: Qwen3-Reranker and Qwen3-VL-Reranker scoring on ONNX Runtime, with no Ray dependency."""

from .api import DocumentRank, Reranker, RerankerResult
from .content import Content, Image, Text
from .dtypes import Dtype
from .errors import (
    ConfigError,
    DeviceMemoryError,
    ImageRefusedError,
    InvalidInputError,
    ModelFormatError,
    ModelNotFoundError,
    RerankError,
    UpstreamError,
)
from .families.qwen3.template import format_document, format_query
from .scorer import ScoreOutput, Scorer

__all__ = [
    "ConfigError",
    "Content",
    "DeviceMemoryError",
    "DocumentRank",
    "Dtype",
    "Image",
    "ImageRefusedError",
    "InvalidInputError",
    "ModelFormatError",
    "ModelNotFoundError",
    "Reranker",
    "RerankerResult",
    "RerankError",
    "Scorer",
    "ScoreOutput",
    "Text",
    "UpstreamError",
    "format_document",
    "format_query",
]
