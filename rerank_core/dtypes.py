"""The Dtype enum of the seed's API, the graph file names each dtype maps to, and the default dtype per device."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Dtype(str, Enum):
    """Numeric format to run in: full precision, half precision (GPU), dynamic int8 (CPU), or bf16 (the f32 graph
    computed in bf16 by OpenVINO on CPUs with AMX-BF16 or AVX512-BF16)."""

    F32 = "f32"
    F16 = "f16"
    INT8 = "int8"
    BF16 = "bf16"

    @classmethod
    def parse(cls, value: Dtype | str | None) -> Dtype:
        """Accept a Dtype, its value or its name in any case ('F32', 'f16', 'int8'); None means F32."""
        if value is None:
            return cls.F32
        if isinstance(value, cls):
            return value
        text = str(value).lower()
        aliases = {
            "fp32": "f32",
            "float32": "f32",
            "fp16": "f16",
            "float16": "f16",
            "bfloat16": "bf16",
            "q8": "int8",
            "quantized": "int8",
        }
        try:
            return cls(aliases.get(text, text))
        except ValueError:
            raise ValueError(f"dtype: unknown {value!r}; expected one of {[d.value for d in cls]}") from None


# Graph names per dtype: ours first, then those used by third-party exports (optimum, onnx-community).
GRAPH_CANDIDATES: dict[Dtype, tuple[str, ...]] = {
    Dtype.F32: ("model.onnx", "onnx/model.onnx"),
    Dtype.F16: ("model_f16.onnx", "model_fp16.onnx", "onnx/model_fp16.onnx"),
    Dtype.INT8: ("model_int8.onnx", "model_quantized.onnx", "onnx/model_int8.onnx", "onnx/model_quantized.onnx"),
}

# Which graph a folder with several serves by default: exact f32 on every CPU (bf16 and int8 are faster but move
# scores, so they are chosen by name; f16 has no fast CPU kernels); f16 on a GPU (Spearman 1.000 against f32).
DEVICE_PREFERENCE: dict[str, tuple[Dtype, ...]] = {
    "cpu": (Dtype.F32, Dtype.INT8, Dtype.F16),
    "cuda": (Dtype.F16, Dtype.F32, Dtype.INT8),
}


def graph_dtype(dtype: Dtype) -> Dtype:
    """The dtype of the graph file that `dtype` runs: bf16 computes the f32 graph, the others run their own."""
    return Dtype.F32 if dtype is Dtype.BF16 else dtype


def choose_dtype(available: Iterable[Dtype], device: str) -> Dtype:
    """The dtype to load when none was asked for: the device's favourite among those available."""
    have = set(available)
    for dtype in DEVICE_PREFERENCE[device]:
        if dtype in have:
            return dtype
    raise ValueError(f"no graph among {sorted(d.value for d in have)}")
