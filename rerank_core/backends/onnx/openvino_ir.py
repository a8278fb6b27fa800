"""Our f32 ONNX graph as OpenVINO reads it best, written once into the cache as OpenVINO IR: grouped-K/V attention
rewritten to what ONNX means, the residual stream marked to stay f32 when the CPU computes in bf16, and for bf16 the
weights stored in bf16."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Literal

import numpy as np

from ...cache_dir import build_once, cache_key, cache_root, entry_label, source_identity

log = logging.getLogger(__name__)

IR_NAME = "model.xml"
# Bump when what the IR holds changes (its rewrites, marks or weights), so cached graphs are made again.
IR_RECIPE = "2"
Weights = Literal["f32", "bf16"]
# Runtime attributes OpenVINO reads from IR only (its Python API cannot set them), hence the IR: one keeps a node in
# its own precision under a lower inference precision, one says a Convert unpacks stored weights.
_KEEP_F32 = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:dynamic"}
_DECOMPRESSION = {"name": "decompression", "version": "0"}
_BF16_WEIGHT = "/bf16_weight"  # suffix of the Converts that unpack bf16 weights


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


def store_weights_bf16(model) -> int:
    """Store in bf16 every matmul weight and embedding table of an OpenVINO model whose values all are bf16 values (a
    bf16 checkpoint's, as Qwen publishes them), each behind a Convert to f32; returns how many were stored.

    Exact by construction: a value is stored in bf16 only if bf16 holds it, so what the graph computes is unchanged
    (an f32 checkpoint keeps its weights, and the exported yes−no head row, a difference, stays f32). The IR file is
    half the size, and its mapped pages were most of a bf16 scorer's memory: on the 0.6B-shape model 2.3 GiB of f32
    weights stayed mapped beside the plugin's own bf16 copies (peak RSS 4.6 GiB against 2.3 GiB so stored).
    """
    import openvino
    from openvino import opset13 as ops

    stored = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != openvino.Type.f32:
            continue
        users = [(target.get_node().get_type_name(), target.get_index()) for target in op.output(0).get_target_inputs()]
        if not users or any(user not in (("MatMul", 1), ("Gather", 0)) for user in users):
            continue
        bits = np.ascontiguousarray(op.get_data()).view(np.uint32)
        if (bits & 0xFFFF).any():  # some value is not a bf16 value: bf16 would round it
            continue
        weights = openvino.Tensor(openvino.Type.bf16, list(op.get_output_shape(0)))
        weights.data.view(np.uint16)[...] = (bits >> 16).astype(np.uint16)
        unpacked = ops.convert(ops.constant(weights), "f32")
        unpacked.set_friendly_name(op.get_friendly_name() + _BF16_WEIGHT)
        op.output(0).replace(unpacked.output(0))
        stored += 1
    return stored


def mark_ir(xml: Path) -> int:
    """Mark an IR file's f32 Adds to stay f32 under bf16 inference, and the Converts of bf16 weights as decompression
    (else the plugin folds them into f32 copies); returns how many Adds were marked.

    OpenVINO's CPU plugin runs every f32 node in bf16 when asked to, so the residual stream, summed by the Adds
    between layers, would be rounded to 8 mantissa bits after every layer (where the official recipe keeps it in
    f32): those roundings moved scores by up to 0.0087 and ranked at Spearman 0.998 against f32 on 96 mixed pairs of
    the 0.6B-shape bench model; with the sums in f32, 0.0036 and 0.9996 at the same speed (docs/benchmarks.md). The
    matmuls still take bf16 inputs and sum in f32; norms, RoPE and attention are fused nodes the marks do not reach.
    """
    tree = ElementTree.parse(xml)
    adds = 0
    for layer in tree.getroot().iter("layer"):
        outputs = [port.get("precision") for port in layer.iterfind("output/port")]
        if layer.get("type") == "Add" and outputs and all(p == "FP32" for p in outputs):
            attribute, adds = _KEEP_F32, adds + 1
        elif layer.get("type") == "Convert" and layer.get("name", "").endswith(_BF16_WEIGHT):
            attribute = _DECOMPRESSION
        else:
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            rt_info = ElementTree.Element("rt_info")
            layer.insert(0, rt_info)
        ElementTree.SubElement(rt_info, "attribute", attribute)
    tree.write(xml, encoding="utf-8", xml_declaration=True)
    return adds


def write_ir(graph: Path, out: Path, weights: Weights) -> None:
    """Read ONNX `graph`, rewrite it, store its weights as `weights`, mark it, and write it to folder `out` as IR
    (staged, then renamed into place)."""
    import openvino

    model = openvino.Core().read_model(str(graph))
    attention = group_query_attention(model)
    stored = store_weights_bf16(model) if weights == "bf16" else 0
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    openvino.save_model(model, staging / IR_NAME, compress_to_fp16=False)  # f32 stays f32
    adds = mark_ir(staging / IR_NAME)
    os.replace(staging, out)
    log.info(
        "%s as OpenVINO IR: %d grouped attentions rewritten, %d f32 Adds marked (residual sums), %d weights bf16",
        graph.name,
        attention,
        adds,
        stored,
    )


def cached_ir(graph: Path, cache_dir: str | os.PathLike | None = None, weights: Weights = "bf16") -> Path:
    """The IR file of ONNX `graph` with its weights stored as `weights`, written into the cache on first use (once
    across processes) and read after.

    Keyed by the bytes of the graph's folder, the weights, the OpenVINO version and IR_RECIPE; it lies under the
    export cache (`export_cache_dir`, $QWEN_RERANK_CACHE or ~/.cache), in `openvino/`: half the f32 graph's size in
    bf16 (1.1 GiB for 0.6B).
    """
    import openvino

    root = cache_root(cache_dir)
    identity = source_identity(graph.parent, memo_dir=root)
    key = cache_key(source=identity, graph=graph.name, weights=weights, openvino=openvino.__version__, recipe=IR_RECIPE)
    final = root / "openvino" / f"{entry_label(graph.parent.name, 60)}-{graph.stem}-{weights}-{key}"
    started = time.monotonic()
    if build_once(final, IR_NAME, lambda out: write_ir(graph, out, weights)):
        log.info("%s: OpenVINO graph written once into %s in %.1f s", graph.name, final, time.monotonic() - started)
    return final / IR_NAME
