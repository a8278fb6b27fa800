"""The exporter writes the lean graph of DESIGN.md, and the packaged tiny model is what the builder makes."""

import json
import logging
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from rerank_core import ModelFormatError, cpu
from rerank_core.backends.onnx import OnnxScorer, cuda_available
from rerank_core.backends.onnx import session as session_module
from rerank_core.cpu import int8_weight_bits, multiplies_int8_exactly
from rerank_core.dtypes import Dtype
from rerank_core.export import EXPORTER_VERSION, export_checkpoint
from rerank_core.export.cache import export_version
from rerank_core.export.quantize import quantize_int8, smooth_down_projections
from rerank_core.families.qwen3.calibration import down_input_maxima
from rerank_core.families.qwen3.export import kv_names
from rerank_core.model_files.folder import GraphFile
from rerank_core.model_files.manifest import Manifest
from tests.conftest import bf16_tolerance

pytestmark = pytest.mark.slow


def graphs(folder) -> set[tuple[str, str, str]]:
    """(file, dtype, layout) of every graph the folder's manifest names."""
    return {(g.file, g.dtype.value, g.layout) for g in Manifest.read(folder).graphs}


def test_export_folder_contents_and_manifest(tiny_export, tiny_checkpoint):
    names = {p.name for p in tiny_export.iterdir()}
    assert {
        "model.onnx",
        "model_int8.onnx",
        "model_f16.onnx",
        "tokenizer.json",
        "config.json",
        "rerank_manifest.json",
    } <= names
    manifest = Manifest.read(tiny_export)
    assert manifest.format == "qwen-rerank/2"
    assert graphs(tiny_export) == {
        ("model.onnx", "f32", "past_kv"),
        ("model_int8.onnx", "int8", "past_kv"),
        ("model_f16.onnx", "f16", "past_kv"),
        ("model_cuda.onnx", "f32", "causal"),
        ("model_cuda_f16.onnx", "f16", "causal"),
        ("model_fused.onnx", "f32", "fused"),
        ("model_fused_f16.onnx", "f16", "fused"),
        ("model_paged.onnx", "f32", "paged"),
        ("model_paged_f16.onnx", "f16", "paged"),
    }
    tokenizer = json.loads((tiny_export / "tokenizer.json").read_text())["model"]["vocab"]
    assert tokenizer["yes"] == manifest.yes_id and tokenizer["no"] == manifest.no_id
    assert manifest.source == str(tiny_checkpoint) and manifest.max_length == 8192


def test_graph_signature_and_no_vocab_sized_logits(tiny_export):
    """model*.onnx: ids, last_index and per-layer past K/V of a shared prefix in; logit and the new K/V out."""
    cpu_graphs = [
        layout
        for name, _, layout in graphs(tiny_export)
        if not name.startswith(("model_cuda", "model_fused", "model_paged"))
    ]
    assert set(cpu_graphs) == {"past_kv"}
    layers = json.loads((tiny_export / "config.json").read_text())["num_hidden_layers"]
    for name in ("model_f16.onnx", "model_int8.onnx"):
        graph = onnx.load(str(tiny_export / name)).graph
        assert [i.name for i in graph.input] == ["input_ids", "last_index", *kv_names(layers)]
        assert [o.name for o in graph.output] == ["logit", *kv_names(layers, prefix="")]
    model = onnx.load(str(tiny_export / "model.onnx"))
    graph = model.graph
    assert [i.name for i in graph.input] == ["input_ids", "last_index", *kv_names(layers)]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.input[:2])
    out = graph.output[0]
    assert out.name == "logit" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert len(out.type.tensor_type.shape.dim) == 1
    vocab = json.loads((tiny_export / "config.json").read_text())["vocab_size"]
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    # nothing of shape [.., vocab] besides the embedding table itself is ever computed
    assert not any(
        v.type.tensor_type.shape.dim and v.type.tensor_type.shape.dim[-1].dim_value == vocab for v in inferred
    )


def _matmul_kinds(graph) -> tuple[list[list[int]], int]:
    """(dims of the weights f32 MatMuls read, number of integer MatMuls)."""
    weights = {t.name: list(t.dims) for t in graph.initializer}
    f32 = [weights[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    return f32, sum(n.op_type == "MatMulIntegerToFloat" for n in graph.node)


def test_int8_graph_runs_every_linear_in_int8_but_the_head(tiny_export):
    """q, k, v, o, gate, up and down of every layer are integer MatMuls; only the 1-D yes−no head stays f32."""
    config = json.loads((tiny_export / "config.json").read_text())
    f32, integer = _matmul_kinds(onnx.load(str(tiny_export / "model_int8.onnx")).graph)
    assert f32 == [[config["hidden_size"]]]
    assert integer == 7 * config["num_hidden_layers"]


def _int8_weight_range(graph_file) -> int:
    """The largest |weight| among a graph's int8 initializers."""
    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(graph_file)).graph.initializer
        if t.data_type == TensorProto.INT8
    ]
    return max(int(np.abs(w.astype(np.int16)).max()) for w in weights)


def test_int8_weights_take_8_bits_where_the_cpu_sums_them_exactly_and_7_elsewhere(tiny_export):
    """The manifest records the bits; 7-bit weights leave u8 × s8 pair sums within int16 (VPMADDUBSW saturates)."""
    entry = next(g for g in Manifest.read(tiny_export).graphs if g.dtype == "int8")
    assert entry.weight_bits == (8 if multiplies_int8_exactly() else 7) == int8_weight_bits()
    largest = _int8_weight_range(tiny_export / "model_int8.onnx")
    assert largest == 127 if entry.weight_bits == 8 else 32 < largest <= 63


def test_an_f32_graph_with_external_weights_quantizes_tensor_by_tensor_to_the_same_int8_graph(
    tiny_export, tmp_path, mixed_pairs
):
    """A big model's f32 graph keeps its weights in an external file; quantization reads them one at a time and
    writes the int8 graph's own file (the f32 one may go), giving what the in-memory path gives."""
    inline, external = (shutil.copytree(tiny_export, tmp_path / name) for name in ("inline", "external"))
    onnx.save(
        onnx.load(str(inline / "model.onnx")),
        str(external / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    maxima = np.random.default_rng(0).uniform(
        0.5, 5.0, size=(2, json.loads((inline / "config.json").read_text())["intermediate_size"])
    )
    for folder in (inline, external):
        quantize_int8(folder / "model.onnx", folder / "model_int8.onnx", 2, down_input_max=maxima, weight_bits=8)
    assert (external / "model_int8.onnx.data").exists() and not (inline / "model_int8.onnx.data").exists()
    sizes = [sum(p.stat().st_size for p in folder.glob("model_int8.onnx*")) for folder in (inline, external)]
    assert sizes[1] <= 1.01 * sizes[0]  # every weight written once
    for path in external.glob("model.onnx*"):
        path.unlink()
    scores = [OnnxScorer.open(folder, dtype="int8").score(mixed_pairs) for folder in (inline, external)]
    np.testing.assert_array_equal(scores[0], scores[1])


def test_a_cpu_without_vnni_quantizes_to_7_bits_and_keeps_its_own_cache_entry(tiny_export, tmp_path, monkeypatch):
    """The export cache keys int8 by weight bits, so a CPU of the other kind never reads a graph made for this one."""
    monkeypatch.setattr(cpu, "multiplies_int8_exactly", lambda: False)
    quantize_int8(tiny_export / "model.onnx", tmp_path / "model_int8.onnx", 2)
    assert 32 < _int8_weight_range(tmp_path / "model_int8.onnx") <= 63
    without_vnni = export_version(Dtype.INT8, gpu_layout=None)
    monkeypatch.setattr(cpu, "multiplies_int8_exactly", lambda: True)
    assert export_version(Dtype.INT8, gpu_layout=None) != without_vnni
    assert export_version(Dtype.F32, gpu_layout=None) == EXPORTER_VERSION  # other dtypes keep their entries


def test_an_8_bit_graph_on_a_cpu_without_vnni_warns_how_to_export_one_for_it(
    tiny_export, tmp_path, monkeypatch, caplog
):
    folder = shutil.copytree(tiny_export, tmp_path / "tiny")
    manifest = Manifest.read(folder)
    manifest.graphs = [g.model_copy(update={"weight_bits": 8}) if g.dtype == "int8" else g for g in manifest.graphs]
    manifest.write(folder)
    monkeypatch.setattr(session_module, "multiplies_int8_exactly", lambda: False)
    with caplog.at_level(logging.WARNING, logger=session_module.__name__):
        OnnxScorer.open(folder, dtype="int8")
        OnnxScorer.open(folder)  # f32: nothing to say
    warned = [r.getMessage() for r in caplog.records if "8-bit weights" in r.getMessage()]
    assert len(warned) == 1 and "--dtype int8" in warned[0]


def test_smoothing_the_down_projections_leaves_the_f32_function_unchanged(tiny_export, tmp_path, mixed_pairs):
    """SmoothQuant's scales fold into up's columns and down's rows: exact in f32, before any quantization."""
    folder = shutil.copytree(tiny_export, tmp_path / "tiny")
    config = json.loads((folder / "config.json").read_text())
    layers, width = config["num_hidden_layers"], config["intermediate_size"]
    model = onnx.load(str(folder / "model.onnx"))
    maxima = np.random.default_rng(0).uniform(0.01, 50.0, size=(layers, width))  # far from the weights' own scale
    smoothed = smooth_down_projections(model.graph, layers, range(layers), maxima)
    assert len(smoothed) == 2 * layers
    for tensor in model.graph.initializer:
        if tensor.name in smoothed:
            assert not np.allclose(numpy_helper.to_array(tensor), smoothed[tensor.name])
            tensor.CopyFrom(numpy_helper.from_array(smoothed[tensor.name], tensor.name))
    onnx.save(model, str(folder / "model.onnx"))
    np.testing.assert_allclose(
        OnnxScorer.open(folder).score(mixed_pairs), OnnxScorer.open(tiny_export).score(mixed_pairs), atol=1e-5
    )


def test_calibration_records_each_down_projections_input_maximum(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    maxima = down_input_maxima(tiny_checkpoint, pairs=[("what is ml?", "Machine learning learns from data.")])
    assert maxima.shape == (config["num_hidden_layers"], config["intermediate_size"])
    assert (maxima > 0).all() and np.isfinite(maxima).all()


def test_f32_layers_outside_the_model_are_refused_naming_the_option(tiny_export, tmp_path):
    with pytest.raises(ValueError, match=r"f32_layers: \[2\] outside the model's layers 0..1"):
        quantize_int8(tiny_export / "model.onnx", tmp_path / "model_int8.onnx", 2, f32_layers={0, 2})
    assert not (tmp_path / "model_int8.onnx").exists()


def test_int8_graph_can_keep_the_first_layer_in_f32(tiny_export, tmp_path, mixed_pairs):
    """Deep models keep their first decoder layer f32 (most of int8's ranking error); here forced on 2 layers."""
    folder = shutil.copytree(tiny_export, tmp_path / "tiny")
    config = json.loads((folder / "config.json").read_text())
    quantize_int8(folder / "model.onnx", folder / "model_int8.onnx", config["num_hidden_layers"], f32_layers={0})
    f32, integer = _matmul_kinds(onnx.load(str(folder / "model_int8.onnx")).graph)
    assert len(f32) == 8 and f32[-1] == [config["hidden_size"]]  # the first layer's 7 linears, then the head
    assert integer == 7 * (config["num_hidden_layers"] - 1)
    int8 = OnnxScorer.open(folder, dtype="int8").score(mixed_pairs)
    assert np.abs(int8 - OnnxScorer.open(folder).score(mixed_pairs)).max() < 0.1


def test_export_refuses_to_overwrite(tiny_checkpoint, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_checkpoint(tiny_checkpoint, tmp_path)
    assert (tmp_path / "keep.txt").exists()


def test_non_qwen3_checkpoint_is_rejected(tiny_checkpoint, tmp_path):
    import shutil

    src = tmp_path / "llama"
    shutil.copytree(tiny_checkpoint, src)
    config = json.loads((src / "config.json").read_text())
    config["model_type"] = "llama"
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="qwen3"):
        export_checkpoint(src, tmp_path / "out")


def test_int8_only_export_keeps_no_f32_graph(tiny_checkpoint, tmp_path, mixed_pairs):
    out = export_checkpoint(tiny_checkpoint, tmp_path / "int8", dtypes=["int8"])
    assert graphs(out) == {("model_int8.onnx", "int8", "past_kv")}
    assert not (out / "model.onnx").exists()
    assert OnnxScorer.open(out, dtype="int8").score(mixed_pairs).shape == (len(mixed_pairs),)


def test_a_bf16_export_is_the_f32_graph_bf16_runs(tiny_checkpoint, tmp_path, official, mixed_pairs):
    out = export_checkpoint(tiny_checkpoint, tmp_path / "bf16", dtypes=["bf16"])
    assert graphs(out) == {("model.onnx", "f32", "past_kv")}
    scores = OnnxScorer.open(out, dtype="bf16").score(mixed_pairs)  # bf16, or f32 on a CPU without it
    np.testing.assert_allclose(scores, official(mixed_pairs), atol=max(bf16_tolerance(), 1e-4))


def test_gpu_graph_is_right_padded_fused_attention_with_no_mask_to_build(tiny_export):
    """The CUDA graph: inputs ids + last_index, one fused causal Attention per layer, nothing that builds a mask."""
    assert {(name, dtype) for name, dtype, layout in graphs(tiny_export) if layout == "causal"} == {
        ("model_cuda.onnx", "f32"),
        ("model_cuda_f16.onnx", "f16"),
    }
    layers = json.loads((tiny_export / "config.json").read_text())["num_hidden_layers"]
    for name in ("model_cuda.onnx", "model_cuda_f16.onnx"):
        graph = onnx.load(str(tiny_export / name)).graph
        assert [i.name for i in graph.input] == ["input_ids", "last_index"]
        attention = [n for n in graph.node if n.op_type == "Attention"]
        assert len(attention) == layers
        assert all({a.name: a.i for a in n.attribute}.get("is_causal") == 1 for n in attention)
        assert all(len([i for i in n.input if i]) == 3 for n in attention)  # q, k, v: no attn_mask input
        ops = {n.op_type for n in graph.node}
        assert not ops & {"CumSum", "Trilu", "Less", "LessOrEqual", "Greater", "Where", "Softmax"}, ops
        assert "RMSNormalization" in ops


def test_fused_graph_runs_onnx_runtimes_fused_operators_with_concatenated_projections(tiny_export):
    """Layout `fused`: per layer one GroupQueryAttention (on the packed QKV: grouped K/V, q/k norms and RoPE inside)
    and four MatMuls (q+k+v, o, gate+up, down); residual adds fused with the next norm; no mask, no unfused
    attention, no standalone RoPE or q/k norm."""
    config = json.loads((tiny_export / "config.json").read_text())
    layers, heads, kv_heads = (config[k] for k in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads"))
    for name in ("model_fused.onnx", "model_fused_f16.onnx"):
        graph = onnx.load(str(tiny_export / name)).graph
        assert [i.name for i in graph.input] == ["input_ids", "last_index"] and [o.name for o in graph.output] == [
            "logit"
        ]
        count = Counter(n.op_type for n in graph.node)
        gqa = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
        assert len(gqa) == layers and count["MatMul"] == 4 * layers + 1  # and the yes−no direction, on last tokens
        attrs = {a.name: a.i for a in gqa[0].attribute if a.type == onnx.AttributeProto.INT}
        assert attrs == {"num_heads": heads, "kv_num_heads": kv_heads, "do_rotary": 1, "rotary_interleaved": 0}
        producer = {out: node for node in graph.node for out in node.output}
        for layer, node in enumerate(gqa):
            assert producer[node.input[0]].op_type == "MatMul" and not any(node.input[1:5])  # packed QKV, no past
            norms = [name.removeprefix(f"body.layers.{layer}.self_attn.") for name in node.input[14:16]]
            assert norms == ["q_norm.weight", "k_norm.weight"]
        assert count["RMSNormalization"] == 2  # the first layer's input norm and the final one: none for q/k
        assert count["Split"] == layers  # gate + up halves; the QKV is never split
        assert [n.name for n in gqa] == [f"GroupQueryAttention_{i}" for i in range(layers)]  # named in messages
        skips = [n for n in graph.node if n.op_type == "SkipSimplifiedLayerNormalization"]
        assert len(skips) == 2 * layers - 1 and all(list(n.output[1:3]) == ["", ""] for n in skips)
        assert not count.keys() & {"Attention", "Softmax", "Trilu", "Where", "CumSum", "Cos", "Sin", "Neg"}, count


def test_off_cuda_a_fused_graph_runs_its_q_k_norms_as_standard_nodes(tiny_export, caplog):
    """ONNX Runtime's CPU provider refuses GroupQueryAttention's fused q/k norms (CUDA runs them); the scorer runs
    the same graph there with those norms as RMSNormalization nodes before the attention."""
    import onnxruntime as ort

    from rerank_core.backends.onnx.session import runs_cuda_only_graph
    from rerank_core.families.qwen3.cuda_only import standard_equivalent
    from rerank_core.families.qwen3.layouts import FusedLayout

    native = str(tiny_export / "model_fused.onnx")
    session = ort.InferenceSession(native, providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.ones((1, 4), np.int64), "last_index": np.array([3])}
    with pytest.raises(Exception, match="q_norm_weight|k_norm_weight"):
        session.run(None, feed)
    with caplog.at_level(logging.WARNING):  # what a CUDA build refusing them would do: say so, run the standard form
        graph = GraphFile(tiny_export / "model_fused.onnx", Dtype.F32, "fused")
        assert not runs_cuda_only_graph(session, graph, FusedLayout)
    assert "refused a fused node" in caplog.text and "q_norm_weight" in caplog.text
    layers = json.loads((tiny_export / "config.json").read_text())["num_hidden_layers"]
    before = Counter(n.op_type for n in onnx.load(native).graph.node)
    after = Counter(n.op_type for n in standard_equivalent(tiny_export / "model_fused.onnx").graph.node)
    assert after - before == Counter({"RMSNormalization": 2 * layers, "Reshape": 4 * layers, "Split": layers})
    model = standard_equivalent(tiny_export / "model_fused.onnx")
    assert all(len(n.input) <= 9 for n in model.graph.node if n.op_type == "GroupQueryAttention")
    scorer = OnnxScorer.open(tiny_export, graph_variant="fused")
    assert np.isfinite(scorer.score([("q", "d")])).all()


def test_the_past_kv_graph_is_the_default_off_cuda(tiny_export):
    scorer = OnnxScorer.open(tiny_export)
    assert scorer.graph_path.name == "model.onnx" and scorer.shares_prefix
    assert OnnxScorer.open(tiny_export, device="cuda").graph_path.name == "model.onnx"  # no CUDA here: CPU graph
    scorer = OnnxScorer.open(tiny_export, graph_variant="cuda")
    assert scorer.layout.right_padded and scorer.graph_path.name == "model_cuda.onnx" and not scorer.shares_prefix
    with pytest.raises(ModelFormatError, match="no int8 causal GPU graph.*--cuda-dtype int8"):
        OnnxScorer.open(tiny_export, graph_variant="cuda", dtype="int8")
    scorer = OnnxScorer.open(tiny_export, graph_variant="fused", dtype="f16")
    assert scorer.layout.name == "fused" and scorer.graph_path.name == "model_fused_f16.onnx"
    with pytest.raises(ModelFormatError, match="no int8 fused GPU graph.*--fused-dtype int8"):
        OnnxScorer.open(tiny_export, graph_variant="fused", dtype="int8")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA device")
def test_on_cuda_auto_loads_the_f16_gpu_graph_and_matches_official(tiny_export, official, mixed_pairs):
    scorer = OnnxScorer.open(tiny_export, device="cuda")
    assert scorer.device == "cuda" and scorer.layout.right_padded and scorer.graph_path.name == "model_cuda_f16.onnx"
    np.testing.assert_allclose(scorer.score(mixed_pairs), official(mixed_pairs), atol=1e-2)


def test_an_int8_gpu_graph_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"cuda_dtypes: no GPU graph for \['int8'\]; choose from f16, f32"):
        export_checkpoint(tiny_checkpoint, tmp_path / "x", cuda_dtypes=["int8"])
    with pytest.raises(ValueError, match=r"fused_dtypes: no GPU graph for \['bf16'\]; choose from f16, f32"):
        export_checkpoint(tiny_checkpoint, tmp_path / "x", fused_dtypes=["bf16"])
    assert not (tmp_path / "x").exists()
