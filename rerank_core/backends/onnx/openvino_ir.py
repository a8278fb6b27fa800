"""Our f32 ONNX graph as OpenVINO reads it best, written once into the cache as OpenVINO IR: grouped-K/V attention
rewritten to what ONNX means, and the residual stream marked to stay f32 when the CPU computes in bf16."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from ...cache_dir import build_once, cache_key, cache_root, source_identity

log = logging.getLogger(__name__)

IR_NAME = "model.xml"
# Bump when what the IR holds changes (its rewrites or marks), so cached graphs are made again.
IR_RECIPE = "1"
# The runtime attribute that keeps a node in its own precision under a lower inference precision: OpenVINO reads
# it from IR only (its Python API cannot set it), hence the IR.
_KEEP_F32 = {"name": "DisablePrecisionConversion", "version": "0", "value": "dynamic:dynamic"}


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


def keep_residual_f32(xml: Path) -> int:
    """Mark every f32 Add of an IR file to stay f32 under bf16 inference; returns how many were marked.

    OpenVINO's CPU plugin runs every f32 node in bf16 when asked to, so the residual stream, summed by the Adds
    between layers, would be rounded to 8 mantissa bits after every layer (where the official recipe keeps it in
    f32): those roundings moved scores by up to 0.0087 and ranked at Spearman 0.998 against f32 on 96 mixed pairs of
    the 0.6B-shape bench model; with the sums in f32, 0.0036 and 0.9996 at the same speed (bench/bf16.py). The
    matmuls still take bf16 inputs and sum in f32; norms, RoPE and attention are fused nodes the marks do not reach.
    """
    tree = ElementTree.parse(xml)
    marked = 0
    for layer in tree.getroot().iter("layer"):
        outputs = [port.get("precision") for port in layer.iterfind("output/port")]
        if layer.get("type") != "Add" or not outputs or any(p != "FP32" for p in outputs):
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            rt_info = ElementTree.Element("rt_info")
            layer.insert(0, rt_info)
        ElementTree.SubElement(rt_info, "attribute", _KEEP_F32)
        marked += 1
    tree.write(xml, encoding="utf-8", xml_declaration=True)
    return marked


def write_ir(graph: Path, out: Path) -> None:
    """Read ONNX `graph`, rewrite and mark it, and write it to folder `out` as IR (staged, then renamed into place)."""
    import openvino

    model = openvino.Core().read_model(str(graph))
    group_query_attention(model)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    openvino.save_model(model, staging / IR_NAME, compress_to_fp16=False)  # weights as they are: f32
    keep_residual_f32(staging / IR_NAME)
    os.replace(staging, out)


def cached_ir(graph: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """The IR file of ONNX `graph`, written into the cache on first use (once across processes) and read after.

    Keyed by the bytes of the graph's folder, the OpenVINO version and IR_RECIPE; it lies under the export cache
    (`export_cache_dir`, $QWEN_RERANK_CACHE or ~/.cache), in `openvino/`, and takes the graph's size on disk.
    """
    import openvino

    root = cache_root(cache_dir)
    identity = source_identity(graph.parent, memo_dir=root)
    key = cache_key(source=identity, graph=graph.name, openvino=openvino.__version__, recipe=IR_RECIPE)
    label = re.sub(r"[^A-Za-z0-9._-]+", "--", graph.parent.name)[:60]
    final = root / "openvino" / f"{label}-{graph.stem}-{key}"
    started = time.monotonic()
    if build_once(final, IR_NAME, lambda out: write_ir(graph, out)):
        log.info("%s: OpenVINO graph written once into %s in %.1f s", graph.name, final, time.monotonic() - started)
    return final / IR_NAME
