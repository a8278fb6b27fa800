"""OpenVINO's own int8 path, for bench/int8.py to set beside ONNX Runtime's: our f32 graph's linear weights stored as
8-bit integers behind a Convert and a per-channel Multiply (the pattern OpenVINO's CPU plugin runs as a compressed
fully-connected layer), activations quantized to int8 at run time in groups of `DYNAMIC_QUANTIZATION_GROUP_SIZE`
input channels (0: weights only, computed in f32). Bench-only: the library's int8 runs on ONNX Runtime, which was
as fast or faster at a better ranking on the machines measured (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Linear MatMuls per decoder layer: q, k, v, o, gate, up, down.
LINEAR_PER_LAYER = 7


def compress_weights(model, f32_layers: set[int], bits: int = 8) -> int:
    """Store the 2-D MatMul weights of an OpenVINO model (but those of `f32_layers` and the 1-column head) as `bits`-bit
    symmetric integers with per-output-channel scales; returns how many were stored."""
    from openvino import opset13 as ops

    linear = [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "MatMul"
        and op.input_value(1).get_node().get_type_name() == "Constant"
        and len(op.input_value(1).get_partial_shape()) == 2
    ]
    levels = 2 ** (bits - 1) - 1
    stored = 0
    for index, op in enumerate(linear):
        weight = np.asarray(op.input_value(1).get_node().get_data(), np.float32)
        if index // LINEAR_PER_LAYER in f32_layers or 1 in weight.shape:
            continue
        inputs_axis = 1 if op.get_attributes().get("transpose_b", False) else 0
        scale = np.abs(weight).max(axis=inputs_axis, keepdims=True) / levels
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        integers = np.clip(np.round(weight / scale), -levels, levels).astype(np.int8)
        unpacked = ops.multiply(ops.convert(ops.constant(integers), "f32"), ops.constant(scale))
        op.input(1).replace_source_output(unpacked.output(0))
        stored += 1
    model.validate_nodes_and_infer_types()
    return stored


def openvino_int8_session(graph: Path, f32_layers: set[int], group_size: int, threads: int):
    """Our f32 ONNX `graph` (its cached IR) with int8 weights, compiled for the CPU with dynamic int8 activations in
    groups of `group_size` channels (0: off), as a session the scorer runs on."""
    import openvino

    from rerank_core.backends.onnx.openvino_ir import cached_ir
    from rerank_core.backends.onnx.openvino_session import OpenVinoSession

    core = openvino.Core()
    model = core.read_model(str(cached_ir(graph, weights="f32")))
    compress_weights(model, f32_layers)
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": threads,
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": group_size,
    }
    return OpenVinoSession(core.compile_model(model, "CPU", config))
