"""The int8 graphs: an f32 export's linear layers (a decoder's, a vision encoder's blocks') as int8 MatMuls,
per-channel weight and per-token activation scales."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import numpy as np

from ..cpu import int8_weight_bits

# One scale per token (not per tensor) keeps a token's int8 values independent of its batch-mates and padding, and
# keeps one large token (the SwiGLU product is heavy-tailed) from flattening every other token to a few levels.
# Activations become uint8 with zero point 128 (x / scale + 128, scale = max|x| / 127): u8 × s8 is the fast
# integer GEMM on x86 (VNNI, AMX).
ZERO_POINT = 128
LEVELS = 127.0
# Weights use 8 bits where the exporting CPU sums u8 × s8 exactly (VNNI, AMX: half the score error of 7 bits on the
# 0.6B shape, same speed) and 7 bits (±63) elsewhere: CPUs without VNNI (AVX2, e.g. AMD Zen 3) multiply u8 × s8 with
# VPMADDUBSW, which saturates each pair sum at int16; 2 × 255 × 63 = 32130 fits, 2 × 255 × 127 does not (it moved
# tiny-model scores by 0.21 on a Zen 3). s8 activations keep 8-bit weights exact but ran 5× slower there.
EPS = 1e-12


def _quantize_weight(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """A [in, out] f32 weight → symmetric `bits`-bit weight (in int8) and its per-output-channel f32 scales."""
    levels = 2.0 ** (bits - 1) - 1
    scale = np.abs(weight).max(axis=0) / levels
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.round(weight / scale), -levels, levels).astype(np.int8), scale


def _per_token_quantization(helper, x: str, p: str) -> list:
    """Nodes that quantize activation `x` row by row: `{p}q` (its integers) and `{p}scale` (max|x| / 127 per row)."""
    return [
        helper.make_node("Abs", [x], [p + "abs"]),
        helper.make_node("ReduceMax", [p + "abs", "q8_last_axis"], [p + "max"], keepdims=1),
        helper.make_node("Mul", [p + "max", "q8_inv_levels"], [p + "raw_scale"]),
        helper.make_node("Max", [p + "raw_scale", "q8_eps"], [p + "scale"]),  # all-zero rows (pads)
        helper.make_node("Div", [x, p + "scale"], [p + "scaled"]),
        helper.make_node("QuantizeLinear", [p + "scaled", "q8_one", "q8_zero_point"], [p + "q"]),
    ]


def _linear_matmuls(graph) -> list:
    """The graph's MatMul nodes whose second input is a 2-D weight, in graph order (layer by layer)."""
    dims = {t.name: len(t.dims) for t in graph.initializer}
    return [n for n in graph.node if n.op_type == "MatMul" and dims.get(n.input[1]) == 2]


def default_f32_layers(num_layers: int) -> set[int]:
    """The decoder layers the exporter keeps in f32: the first two of a model with more than 4 layers (they hold most
    of int8's ranking error; with the down projections smoothed, Spearman against f32 0.991–0.993 → 0.996–0.997 on
    the 0.6B shape at int8's speed within noise: bench/int8.py)."""
    return {0, 1} if num_layers > 4 else set()


def smooth_down_projections(
    graph,
    num_layers: int,
    layers: Iterable[int],
    down_input_max: np.ndarray,
    alpha: float = 0.5,
    read: Callable | None = None,
) -> dict[str, np.ndarray]:
    """SmoothQuant on the down projections of `layers`, folded exactly into the weights (the f32 function is
    unchanged): channel j of the down input (silu(gate) ⊙ up) is divided by s_j = max|x_j|^α / max|W_down[j]|^(1−α)
    through up's output column j, and W_down's row j is multiplied by s_j. Returns the new weights by name.
    The down input is the heavy-tailed activation that per-token int8 scales lose the most on. `read`: a weight's
    array from its TensorProto (default: the tensor's own data)."""
    from onnx import numpy_helper

    read = read or numpy_helper.to_array
    linear = _linear_matmuls(graph)
    per_layer = len(linear) // max(num_layers, 1)
    producer = {o: n for n in graph.node for o in n.output}
    weights = {t.name: t for t in graph.initializer}
    smoothed = {}
    for layer in layers:
        up, down = linear[(layer + 1) * per_layer - 2], linear[(layer + 1) * per_layer - 1]
        gate_product = producer.get(down.input[0])
        if gate_product is None or gate_product.op_type != "Mul" or up.output[0] not in gate_product.input:
            raise ValueError(f"layer {layer}: the down projection's input is not silu(gate) * up; cannot smooth")
        w_up, w_down = (read(weights[w]) for w in (up.input[1], down.input[1]))
        x_max = np.maximum(down_input_max[layer].astype(np.float32), EPS)
        w_max = np.maximum(np.abs(w_down).max(axis=1), EPS)
        scale = (x_max**alpha / w_max ** (1 - alpha)).astype(np.float32)
        smoothed[up.input[1]] = w_up / scale[None, :]
        smoothed[down.input[1]] = w_down * scale[:, None]
    return smoothed


def quantize_int8(
    f32_graph: Path,
    out_file: Path,
    num_layers: int,
    f32_layers: Collection[int] | None = None,
    *,
    down_input_max: np.ndarray | None = None,
    smoothing_alpha: float = 0.5,
    weight_bits: int | None = None,
    signed_activations: bool = False,
) -> None:
    """Write `out_file`: `f32_graph` with each linear MatMul in int8 but the 1-D yes−no head and those of the decoder
    layers in `f32_layers` (None: `default_f32_layers`). Runs on ONNX Runtime (com.microsoft MatMulIntegerToFloat).
    `down_input_max` ([layers, intermediate], from calibration) smooths the down projections first.
    `weight_bits`: ≤ 8, None for this CPU's (`cpu.int8_weight_bits`); `signed_activations` (int8 instead of uint8)
    exists to compare recipes (bench/int8.py)."""
    import onnx

    model = onnx.load(str(f32_graph), load_external_data=False)  # weights over ~1.5 GB stay in their file
    graph = model.graph
    read = _reader(f32_graph.parent)
    linear = _linear_matmuls(graph)
    per_layer = len(linear) // max(num_layers, 1)
    kept_layers = default_f32_layers(num_layers) if f32_layers is None else set(f32_layers)
    if outside := sorted(i for i in kept_layers if not 0 <= i < num_layers):
        raise ValueError(f"f32_layers: {outside} outside the model's layers 0..{num_layers - 1}")
    chosen = {n.name for i, n in enumerate(linear) if i // per_layer not in kept_layers}
    arrays: dict[str, np.ndarray] = {}  # weights changed before quantization
    if down_input_max is not None:
        quantized_layers = [i for i in range(num_layers) if i not in kept_layers]
        arrays = smooth_down_projections(
            graph, num_layers, quantized_layers, down_input_max, smoothing_alpha, read=read
        )
    _write_int8(model, f32_graph, out_file, chosen, arrays, weight_bits, signed_activations)


def quantize_blocks_int8(f32_graph: Path, out_file: Path) -> None:
    """Write `out_file`: an encoder's `f32_graph` with the linear layers of its repeated blocks in int8 (Gemm nodes
    whose weight is named `….blocks.N.…`, as torch's exporter names a ViT's); the rest stays f32 (a vision encoder's
    patch embedding and mergers, whose outputs are the decoder's features); weights in this CPU's int8 bits."""
    import onnx

    model = onnx.load(str(f32_graph), load_external_data=False)
    chosen = {n.name for n in model.graph.node if n.op_type == "Gemm" and ".blocks." in n.input[1]}
    if not chosen:
        raise ValueError(f"{f32_graph}: no Gemm node of an encoder block to quantize")
    _write_int8(model, f32_graph, out_file, chosen, {}, None, False)


def _weight_of(node, read: Callable, tensor) -> np.ndarray:
    """A linear node's weight as [in, out]: a MatMul's as it is, a Gemm's (B transposed, no bias, scale 1) turned."""
    from onnx import helper

    weight = read(tensor)
    if node.op_type == "MatMul":
        return weight
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) > 2 or attributes.get("transA") or attributes.get("alpha", 1.0) != 1.0:
        raise ValueError(f"{node.name}: only Gemm(A, B) with transB and no bias or scale is quantized")
    return np.ascontiguousarray(weight.T) if attributes.get("transB") else weight


def _write_int8(
    model,
    f32_graph: Path,
    out_file: Path,
    chosen: set[str],
    arrays: dict[str, np.ndarray],
    weight_bits: int | None,
    signed_activations: bool,
) -> None:
    """Save `model` (loaded from `f32_graph` without its weights) to `out_file` with the linear nodes named in
    `chosen` as int8 MatMulIntegerToFloat: per-output-channel weight scales, per-token activation scales. `arrays`:
    weights to quantize in place of the graph's own (smoothed)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    external = f32_graph.with_suffix(".onnx.data").exists()
    store = _WeightFile(out_file, f32_graph.parent) if external else None
    read = _reader(f32_graph.parent)
    weights = {t.name: t for t in graph.initializer}
    zero_point = np.array(0, np.int8) if signed_activations else np.array(ZERO_POINT, np.uint8)
    graph.initializer.extend(
        numpy_helper.from_array(value, name)
        for value, name in [
            (np.array([-1], np.int64), "q8_last_axis"),
            (np.array(1 / LEVELS, np.float32), "q8_inv_levels"),
            (np.array(EPS, np.float32), "q8_eps"),
            (np.array(1.0, np.float32), "q8_one"),
            (zero_point, "q8_zero_point"),
        ]
    )
    token_scaled: dict[str, tuple[str, str]] = {}  # activation → (its quantized tensor, its per-token scale)
    nodes, replaced = [], set()
    bits = weight_bits or int8_weight_bits()
    for node in graph.node:
        if node.name not in chosen:
            nodes.append(node)
            continue
        x, w = node.input[:2]
        if x not in token_scaled:
            prefix = f"q8_act{len(token_scaled)}_"
            nodes += _per_token_quantization(helper, x, prefix)
            token_scaled[x] = (prefix + "q", prefix + "scale")
        quantized, scale = token_scaled[x]
        weight = arrays.pop(w) if w in arrays else _weight_of(node, read, weights[w])
        w_int8, w_scale = _quantize_weight(weight, bits)
        del weight
        replaced.add(w)
        new = [numpy_helper.from_array(w_int8, w + "_int8"), numpy_helper.from_array(w_scale, w + "_scale")]
        graph.initializer.extend([store.put(t) for t in new] if store else new)
        nodes += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [quantized, w + "_int8", "q8_one", w + "_scale", "q8_zero_point"],
                [node.output[0] + "_unscaled"],
                domain="com.microsoft",
                name=node.name,
            ),
            helper.make_node("Mul", [node.output[0] + "_unscaled", scale], [node.output[0]]),
        ]
    graph.ClearField("node")
    graph.node.extend(nodes)
    remaining = [t for t in graph.initializer if t.name not in replaced]
    graph.ClearField("initializer")
    graph.initializer.extend([store.copy(t) for t in remaining] if store else remaining)
    if store:
        store.close()
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out_file))


def _reader(folder: Path) -> Callable:
    """A TensorProto's array, read from `folder`'s external data file where it lives there (one tensor at a time)."""
    from onnx import numpy_helper

    return lambda tensor: numpy_helper.to_array(tensor, base_dir=str(folder))


def _itemsize(data_type: int) -> int:
    """Bytes per element of an ONNX tensor data type."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize


class _WeightFile:
    """The int8 graph's external data file, written one tensor at a time, so a model's weights are never all in
    memory at once: new tensors go in as they are made, the f32 graph's others are copied over in chunks."""

    CHUNK = 64 << 20
    INLINE_BYTES = 1024  # smaller tensors (shapes, scalars) stay in the graph, where shape inference reads them

    def __init__(self, out_file: Path, source_folder: Path):
        self.location = out_file.name + ".data"
        self.source_folder = source_folder
        self.sink = open(out_file.with_name(self.location), "wb")  # noqa: SIM115 - closed by close()

    def put(self, tensor):
        """`tensor`'s bytes appended to the file; the tensor now points at them (a small one stays as it is)."""
        if len(tensor.raw_data) < self.INLINE_BYTES:
            return tensor
        offset, length = self.sink.tell(), len(tensor.raw_data)
        self.sink.write(tensor.raw_data)
        tensor.ClearField("raw_data")
        return self._point(tensor, offset, length)

    def copy(self, tensor):
        """A tensor of the f32 graph, moved into this file: its external bytes copied in chunks (a small tensor's
        brought into the graph), an inline one put."""
        from onnx import external_data_helper

        if not external_data_helper.uses_external_data(tensor):
            return self.put(tensor)
        info = external_data_helper.ExternalDataInfo(tensor)
        if info.location == self.location:  # put here already
            return tensor
        offset, length = self.sink.tell(), info.length
        if length is None:  # optional in the format: the tensor's own size
            length = int(np.prod(tensor.dims, dtype=np.int64)) * _itemsize(tensor.data_type)
        if length < self.INLINE_BYTES:
            external_data_helper.load_external_data_for_tensor(tensor, str(self.source_folder))
            del tensor.external_data[:]
            tensor.data_location = tensor.DEFAULT
            return tensor
        with open(self.source_folder / info.location, "rb") as source:
            source.seek(info.offset or 0)
            left = length
            while left:
                chunk = source.read(min(left, self.CHUNK))
                self.sink.write(chunk)
                left -= len(chunk)
        return self._point(tensor, offset, length)

    def _point(self, tensor, offset: int, length: int):
        """`tensor` now reads its bytes at `offset` of this file."""
        del tensor.external_data[:]
        for key, value in (("location", self.location), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.data_location = tensor.EXTERNAL
        return tensor

    def close(self) -> None:
        """Finish the file."""
        self.sink.close()
