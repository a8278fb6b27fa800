"""OpenVINO sessions over our f32 ONNX graphs: the bf16 path for CPUs that multiply bf16 (AMX-BF16, AVX512-BF16)."""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

INSTALL_HINT = "pip install 'qwen-rerank[openvino]'"
NO_BF16 = "this CPU has neither AMX-BF16 nor AVX512-BF16"
_ONNX_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "i64": "tensor(int64)", "i32": "tensor(int32)"}


def openvino_installed() -> bool:
    """True when the openvino package (the `openvino` extra) can be imported."""
    return importlib.util.find_spec("openvino") is not None


def import_openvino():
    """The openvino module, or an ImportError naming the extra that installs it."""
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(f"dtype bf16 runs on OpenVINO, which is not installed: {INSTALL_HINT}") from exc
    return openvino


@functools.cache
def cpu_runs_bf16() -> bool:
    """True when OpenVINO's CPU plugin computes bf16 natively on this machine (AMX-BF16 or AVX512-BF16)."""
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def bf16_available() -> bool:
    """True where dtype bf16 computes bf16: OpenVINO is installed and this CPU multiplies bf16 natively."""
    return openvino_installed() and cpu_runs_bf16()


def group_query_attention(model) -> int:
    """Rewrite each grouped-K/V attention of an OpenVINO model read from ONNX so it computes what ONNX means; returns
    how many were rewritten.

    The ONNX frontend turns `Attention` into `ScaledDotProductAttention`, whose heads broadcast like numpy's: query
    heads 16 against K/V heads 8 neither broadcast nor repeat, and the output takes the K/V heads' width. Splitting
    the query heads into [K/V heads, group] and giving K/V a group axis of 1 lets them broadcast, so each K/V head
    serves its group of query heads (the order Qwen3's repeat_kv uses) without copying K/V per query head.
    """
    from openvino import opset13 as ops

    def const(*values: int):
        return ops.constant(np.array(values, np.int64))

    rewritten = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "ScaledDotProductAttention":
            continue
        query, key, value, *rest = (port.get_source_output() for port in op.inputs())
        kv_heads = key.get_partial_shape()[1]
        query_heads = query.get_partial_shape()[1]
        if not kv_heads.is_static or (query_heads.is_static and query_heads == kv_heads):
            continue
        query_shape = ops.shape_of(query, output_type="i64")
        grouped_shape = ops.concat(  # [batch, K/V heads, group, tokens, head size]
            [
                ops.gather(query_shape, const(0), 0),
                const(kv_heads.get_length(), -1),
                ops.gather(query_shape, const(2, 3), 0),
            ],
            0,
        )
        grouped = ops.scaled_dot_product_attention(
            ops.reshape(query, grouped_shape, special_zero=False),
            ops.unsqueeze(key, const(2)),
            ops.unsqueeze(value, const(2)),
            *rest,
            causal=op.get_attributes().get("causal", False),
        )
        op.output(0).replace(ops.reshape(grouped, query_shape, special_zero=False).output(0))
        rewritten += 1
    if rewritten:
        model.validate_nodes_and_infer_types()
    return rewritten


class OpenVinoSession:
    """An ONNX graph compiled by OpenVINO for the CPU, behind the part of ort.InferenceSession the layouts use
    (get_inputs, get_outputs, run, get_providers)."""

    def __init__(self, graph: Path, *, precision: str = "bf16", threads: int | None = None):
        openvino = import_openvino()
        core = openvino.Core()
        model = core.read_model(str(graph))
        group_query_attention(model)
        config = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # an infer request runs one call at a time; ORT sessions allow concurrent runs

    @staticmethod
    def _describe(port) -> SimpleNamespace:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return SimpleNamespace(
            name=port.get_any_name(), shape=shape, type=_ONNX_TYPES[port.get_element_type().get_type_name()]
        )

    def get_inputs(self) -> list[SimpleNamespace]:
        """Inputs as ONNX Runtime describes them: name, shape (None where dynamic), ONNX type."""
        return [self._describe(port) for port in self.compiled.inputs]

    def get_outputs(self) -> list[SimpleNamespace]:
        """Outputs as ONNX Runtime describes them."""
        return [self._describe(port) for port in self.compiled.outputs]

    def get_providers(self) -> list[str]:
        """Where the graph runs, in ONNX Runtime's terms."""
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for `feed`, as ort.InferenceSession.run returns them (copies, safe to keep)."""
        with self._lock:
            results = self._request.infer(feed)
            return [results[self.compiled.output(name)] for name in names]
