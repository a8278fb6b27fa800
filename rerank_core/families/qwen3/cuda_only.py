"""ONNX-standard equivalents of the parts of our graphs only ONNX Runtime's CUDA provider runs, so every other
provider runs the same graph: GroupQueryAttention's fused per-head q/k RMSNorm (`q_norm_weight`, `k_norm_weight`)
becomes RMSNormalization nodes before it; PagedAttention (layout `paged`) becomes the same norms, RotaryEmbedding,
the cache written with ScatterND and read through the block table with Gather, and ONNX's Attention with a mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import onnx
    from onnx import helper, numpy_helper
except ImportError as exc:
    raise ImportError(
        "a `fused` graph off CUDA runs its CUDA-only nodes as standard ones, which needs the onnx package: "
        "pip install onnx"
    ) from exc

from .paged_standard import unpage_attention

GQA = "GroupQueryAttention"
PAGED = "PagedAttention"
Q_NORM, K_NORM = 14, 15  # GroupQueryAttention's q_norm_weight and k_norm_weight inputs
NORM_ATTRIBUTES = ("qk_norm_epsilon", "q_norm_epsilon", "k_norm_epsilon")
DEFAULT_EPSILON = 1e-6  # the operator's default qk_norm_epsilon


def has_fused_qk_norms(model: onnx.ModelProto) -> bool:
    """Whether a GroupQueryAttention node of `model` normalizes q and k itself (a CUDA-only input)."""
    return any(_fuses_norms(node) for node in model.graph.node)


def _fuses_norms(node: onnx.NodeProto) -> bool:
    return node.op_type == GQA and len(node.input) > K_NORM and bool(node.input[Q_NORM])


def split_qk_norms(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every GroupQueryAttention that normalizes q and k itself rewritten in place: its packed QKV split,
    q and k normalized per head by RMSNormalization (ONNX opset 23), and fed to a GroupQueryAttention without them."""
    sizes = {init.name: list(init.dims) for init in model.graph.initializer}
    nodes = []
    for index, node in enumerate(model.graph.node):
        if not _fuses_norms(node):
            nodes.append(node)
            continue
        nodes.extend(_split(node, index, sizes, model.graph.initializer))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _split(node: onnx.NodeProto, index: int, sizes: dict, initializers) -> list[onnx.NodeProto]:
    """The nodes replacing one GroupQueryAttention with fused q/k norms."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.input[1]:
        raise ValueError(f"{node.name}: q/k norms are split only from a packed QKV input")
    if node.input[Q_NORM] not in sizes:
        raise ValueError(f"{node.name}: its q_norm_weight is not an initializer")
    head_dim = sizes[node.input[Q_NORM]][0]
    heads, kv_heads = attrs["num_heads"], attrs["kv_num_heads"]
    epsilon = attrs.get("qk_norm_epsilon", DEFAULT_EPSILON)
    tag = f"qk_split_{index}"
    initializers.extend(
        numpy_helper.from_array(np.array(values, np.int64), f"{tag}_{name}")
        for name, values in (
            ("sizes", [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]),
            ("shape_q", [0, 0, heads, head_dim]),
            ("shape_k", [0, 0, kv_heads, head_dim]),
            ("shape_flat", [0, 0, -1]),
        )
    )
    q, k, v = f"{tag}_q", f"{tag}_k", f"{tag}_v"
    out = [helper.make_node("Split", [node.input[0], f"{tag}_sizes"], [q, k, v], name=f"{tag}_split", axis=-1)]
    for name, norm, shape in ((q, Q_NORM, "shape_q"), (k, K_NORM, "shape_k")):
        out += [
            helper.make_node("Reshape", [name, f"{tag}_{shape}"], [f"{name}_heads"], name=f"{name}_heads"),
            helper.make_node(
                "RMSNormalization",
                [f"{name}_heads", node.input[norm]],
                [f"{name}_normed"],
                name=f"{name}_norm",
                axis=-1,
                epsilon=float(epsilon),
                stash_type=1,
            ),
            helper.make_node("Reshape", [f"{name}_normed", f"{tag}_shape_flat"], [f"{name}_n"], name=f"{name}_n"),
        ]
    inputs = [f"{q}_n", f"{k}_n", v, *node.input[3:Q_NORM]]
    while inputs and not inputs[-1]:
        inputs.pop()
    kept = {key: value for key, value in attrs.items() if key not in NORM_ATTRIBUTES}
    out.append(helper.make_node(GQA, inputs, list(node.output), name=node.name, domain=node.domain, **kept))
    return out


def standard_equivalent(graph: Path) -> onnx.ModelProto | None:
    """The graph at `graph` (its weights left in their external file, if any) with its CUDA-only parts rewritten;
    None when it has none (a graph exported before they were used)."""
    model = onnx.load(str(graph), load_external_data=False)
    if any(node.op_type == PAGED for node in model.graph.node):
        return unpage_attention(model)
    return split_qk_norms(model) if has_fused_qk_norms(model) else None
