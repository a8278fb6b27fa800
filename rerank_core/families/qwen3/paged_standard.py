"""ONNX Runtime's PagedAttention (CUDA only) as ONNX-standard nodes, so a `paged` graph runs on every provider.

Per node: the packed QKV split, q and k normalized per head (RMSNormalization) and rotated (RotaryEmbedding, each
token at its sequence's `past_seqlens` + its offset), every token's K/V written into the cache at the slot its
sequence's block table gives (ScatterND), each sequence's keys and values read back through its table (Gather),
queries unpacked to [sequence, offset], ONNX's Attention with the causal, bottom-right aligned mask, and the output
packed again. The index arithmetic depends only on the call's lengths and table, so it is built once for all layers.
What the operator leaves to its options (slot_mapping, head_sink, softcap, windows, quantized caches) is refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PAGED = "PagedAttention"
QUERY, KEY, VALUE, KEY_CACHE, VALUE_CACHE, CUMULATIVE, PAST, TABLE, COS, SIN = range(10)
Q_NORM, K_NORM, METADATA = 12, 13, 16
SUPPORTED_INPUTS = {QUERY, KEY_CACHE, VALUE_CACHE, CUMULATIVE, PAST, TABLE, COS, SIN, Q_NORM, K_NORM, METADATA}
DEFAULTS = {"softcap": 0.0, "local_window_size": -1, "is_causal": 1, "rotary_interleaved": 0, "do_rotary": 0}
DEFAULT_EPSILON = 1e-6


class _Builder:
    """Emits nodes and int64 constants under one name prefix."""

    def __init__(self, tag: str, initializers):
        self.tag, self.initializers, self.nodes, self.count = tag, initializers, [], 0

    def const(self, values) -> str:
        """An int64 initializer holding `values` (a scalar when given one)."""
        name = self._name("c")
        self.initializers.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def __call__(self, op: str, *inputs: str, outputs: int | list[str] = 1, **attrs):
        """One node; its output name (or names)."""
        names = outputs if isinstance(outputs, list) else [self._name(op) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self._name(f"{op}_node"), **attrs))
        return names[0] if len(names) == 1 else names

    def _name(self, what: str) -> str:
        self.count += 1
        return f"{self.tag}_{what}_{self.count}"


def unpage_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with every PagedAttention rewritten in place into standard nodes (see the module docstring)."""
    sizes = {init.name: list(init.dims) for init in model.graph.initializer}
    nodes, indices, lengths = [], None, None
    for index, node in enumerate(model.graph.node):
        if node.op_type != PAGED:
            nodes.append(node)
            continue
        _check(node, sizes)
        if indices is None:
            lengths = tuple(node.input[i] for i in (CUMULATIVE, PAST, TABLE))
            build = _Builder("paged_index", model.graph.initializer)
            indices = _call_indices(build, node)
            nodes.extend(build.nodes)
        elif tuple(node.input[i] for i in (CUMULATIVE, PAST, TABLE)) != lengths:
            raise ValueError(f"{node.name}: every PagedAttention of a graph must read the same lengths and table")
        build = _Builder(f"paged_{index}", model.graph.initializer)
        _attention(build, node, indices, sizes[node.input[Q_NORM]][0])
        nodes.extend(build.nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _check(node: onnx.NodeProto, sizes: dict) -> None:
    """Refuse the operator's options our graphs do not use, rather than compute something else."""
    used = {i for i, name in enumerate(node.input) if name}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    odd = sorted(used - SUPPORTED_INPUTS) + [
        key for key, default in DEFAULTS.items() if key != "do_rotary" and attrs.get(key, default) != default
    ]
    if odd or not attrs.get("do_rotary") or attrs.get("kv_cache_layout", b"SEPARATE") not in (b"SEPARATE", "SEPARATE"):
        raise ValueError(f"{node.name}: no standard equivalent for these PagedAttention options: {odd or attrs}")
    if not ({Q_NORM, K_NORM} <= used and node.input[Q_NORM] in sizes):
        raise ValueError(f"{node.name}: the standard equivalent needs q/k norm weights as initializers")


def _call_indices(b: _Builder, node: onnx.NodeProto) -> dict[str, str]:
    """Index tensors of the call, from its packed query, lengths, block table and cache shape (int64 throughout):
    `slot` [T, 1] where each token's K/V is written, `read` [B, L] the slots each sequence reads (`written` [B, L,
    1, 1]: those of its own tokens), `rows` [B, S] the
    packed token of each (sequence, offset), `mask` [B, 1, S, L], `packed` [T] each token's row in the unpacked
    output, `positions` [1, T] and the flat cache shape."""
    int64 = TensorProto.INT64
    cumulative = b("Cast", node.input[CUMULATIVE], to=int64)
    past = b("Cast", node.input[PAST], to=int64)
    table = b("Cast", node.input[TABLE], to=int64)
    zero, one, axis0, axis1 = b.const(0), b.const(1), b.const([0]), b.const([1])
    tokens = b("Shape", node.input[QUERY], start=0, end=1)
    starts = b("Slice", cumulative, b.const([0]), b.const([-1]))
    ends = b("Slice", cumulative, b.const([1]), b.const([np.iinfo(np.int64).max]))
    lengths = b("Sub", ends, starts)
    token = b("Range", zero, b("Squeeze", tokens), one)
    ended = b("LessOrEqual", b("Unsqueeze", ends, axis0), b("Unsqueeze", token, axis1))  # [T, B]
    sequence = b("ReduceSum", b("Cast", ended, to=int64), axis1, keepdims=0)
    offset = b("Sub", token, b("Gather", starts, sequence))
    position = b("Add", offset, b("Gather", past, sequence))
    block_size = b("Shape", node.input[KEY_CACHE], start=1, end=2)
    width = b("Shape", node.input[TABLE], start=1, end=2)
    table_flat = b("Reshape", table, b.const([-1]))
    block = b("Gather", table_flat, b("Add", b("Mul", sequence, width), b("Div", position, block_size)))
    slot = b("Add", b("Mul", block, block_size), b("Mod", position, block_size))
    total = b("Add", past, lengths)
    longest_key = b("ReduceMax", total, keepdims=1)
    longest_query = b("ReduceMax", lengths, keepdims=1)
    key = b("Range", zero, b("Squeeze", longest_key), one)
    key_block = b("Min", b("Div", key, block_size), b("Sub", width, one))
    read = b("Add", b("Mul", b("Gather", table, key_block, axis=1), block_size), b("Mod", key, block_size))
    query = b("Range", zero, b("Squeeze", longest_query), one)
    last_token = b("Sub", tokens, one)
    rows = b("Min", b("Add", b("Unsqueeze", starts, axis1), b("Unsqueeze", query, axis0)), last_token)
    sees_up_to = b("Add", b("Unsqueeze", past, axis1), b("Unsqueeze", query, axis0))  # [B, S]
    visible = b("LessOrEqual", b("Unsqueeze", key, b.const([0, 1])), b("Unsqueeze", sees_up_to, b.const([2])))
    written = b("Less", b("Unsqueeze", key, axis0), b("Unsqueeze", total, axis1))  # [B, L]: slots this call wrote
    return {
        "slot": b("Unsqueeze", slot, axis1),
        "written": b("Unsqueeze", written, b.const([2, 3])),
        "read": read,
        "rows": rows,
        "mask": b("Unsqueeze", visible, axis1),
        "packed": b("Add", b("Mul", sequence, b("Squeeze", longest_query)), offset),
        "positions": b("Unsqueeze", position, axis0),
        "flat_cache": b("Concat", b.const([-1]), b("Shape", node.input[KEY_CACHE], start=2), axis=0),
    }


def _attention(b: _Builder, node: onnx.NodeProto, at: dict[str, str], head_dim: int) -> None:
    """The nodes computing one PagedAttention's three outputs from its inputs and the call's indices `at`."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    heads, kv_heads = attrs["num_heads"], attrs["kv_num_heads"]
    epsilon = float(attrs.get("qk_norm_epsilon", DEFAULT_EPSILON))
    q, k, v = b(
        "Split",
        node.input[QUERY],
        b.const([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]),
        outputs=3,
        axis=-1,
    )

    def rotated(x: str, count: int, norm: int) -> str:
        """x [T, count·D] normed per head, rotated at each token's position → [T, count, D]."""
        normed = b(
            "RMSNormalization",
            b("Reshape", x, b.const([0, count, head_dim])),
            node.input[norm],
            axis=-1,
            epsilon=epsilon,
            stash_type=1,
        )
        one_row = b("Reshape", normed, b.const([1, -1, count * head_dim]))
        turned = b("RotaryEmbedding", one_row, node.input[COS], node.input[SIN], at["positions"], num_heads=count)
        return b("Reshape", turned, b.const([-1, count, head_dim]))

    by_sequence = []
    values = b("Reshape", v, b.const([0, kv_heads, head_dim]))
    for new, cache, out in ((rotated(k, kv_heads, K_NORM), KEY_CACHE, 1), (values, VALUE_CACHE, 2)):
        written = b("ScatterND", b("Reshape", node.input[cache], at["flat_cache"]), at["slot"], new)
        if node.output[out]:  # the cache as this layer left it, for the next layer's node
            b("Reshape", written, b("Shape", node.input[cache]), outputs=[node.output[out]])
        # Slots past a sequence's end hold whatever the cache held (NaN included, which a masked weight of 0 would
        # still spread): zeros there. The CUDA kernel never reads them.
        read = b("Gather", written, at["read"])
        clean = b("Where", at["written"], read, b("CastLike", b.const(0), read))
        by_sequence.append(b("Transpose", clean, perm=[0, 2, 1, 3]))  # [B, KV, L, D]
    queries = b("Transpose", b("Gather", rotated(q, heads, Q_NORM), at["rows"]), perm=[0, 2, 1, 3])  # [B, H, S, D]
    attended = b("Attention", queries, *by_sequence, at["mask"], scale=float(attrs.get("scale", head_dim**-0.5)))
    unpacked = b("Reshape", b("Transpose", attended, perm=[0, 2, 1, 3]), b.const([-1, heads * head_dim]))
    b("Gather", unpacked, at["packed"], outputs=[node.output[0]])
