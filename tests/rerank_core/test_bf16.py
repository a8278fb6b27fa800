"""The bf16 CPU path: OpenVINO runs our f32 graph (grouped K/V attention rewritten) exactly in f32 on any CPU, in bf16
where the CPU multiplies it; elsewhere dtype bf16 falls back to f32 with one log line."""

import logging
import xml.etree.ElementTree as ElementTree
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import spearmanr

from rerank_core import ConfigError, Dtype
from rerank_core.backends.onnx import OnnxScorer
from rerank_core.backends.onnx.openvino_ir import IR_NAME, cached_ir, group_query_attention
from rerank_core.backends.onnx.openvino_session import NO_BF16, OpenVinoSession, bf16_available, cpu_runs_bf16
from rerank_core.backends.onnx.session import choose_precision
from rerank_core.model_files.folder import ModelFolder
from rerank_core.scorer import Prepared

pytestmark = pytest.mark.slow
BF16_CPU = cpu_runs_bf16()
needs_bf16 = pytest.mark.skipif(not BF16_CPU, reason=NO_BF16)
needs_no_bf16 = pytest.mark.skipif(BF16_CPU, reason="this CPU multiplies bf16: the fallback cannot happen here")
TOL = 1e-4
BF16_TOL = 3e-2  # bf16 keeps 8 mantissa bits; OpenVINO accumulates in f32


def on_openvino(folder, precision: str, **options) -> OnnxScorer:
    """A scorer of `folder`'s f32 graph whose session is OpenVINO at `precision`."""
    scorer = OnnxScorer.open(folder, dtype="f32", **options)
    scorer.replace_session(OpenVinoSession.open(scorer.graph_path, precision=precision))
    return scorer


def test_every_grouped_attention_is_rewritten(tiny_export):
    import openvino

    model = openvino.Core().read_model(str(tiny_export / "model.onnx"))
    layers = sum(op.get_type_name() == "ScaledDotProductAttention" for op in model.get_ordered_ops())
    assert layers == 2 and group_query_attention(model) == layers  # 4 query heads over 2 K/V heads in each
    assert group_query_attention(model) == 0  # what it made is already grouped


def marked_adds(xml) -> set[str]:
    """Names of the IR's layers marked to keep their precision, each checked to be an Add."""
    marked = {
        layer.get("name"): layer.get("type")
        for layer in ElementTree.parse(xml).getroot().iter("layer")
        if layer.find("rt_info/attribute[@name='DisablePrecisionConversion']") is not None
    }
    assert set(marked.values()) == {"Add"}
    return set(marked)


def test_the_ir_is_written_once_with_the_residual_sums_marked(tiny_export, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="rerank_core"):
        xml = cached_ir(tiny_export / "model.onnx", tmp_path)
        written = xml.stat().st_mtime_ns
        assert cached_ir(tiny_export / "model.onnx", tmp_path) == xml and xml.stat().st_mtime_ns == written
    assert sum("written once" in r.getMessage() for r in caplog.records) == 1
    assert xml.name == IR_NAME and xml.parent.parent == tmp_path / "openvino"
    assert len(marked_adds(xml)) >= 4  # two residual sums in each of the 2 layers, at least


@pytest.fixture(scope="module")
def bf16_weight_export(tmp_path_factory):
    """The tiny model built with its weights in bf16, as Qwen publishes its checkpoints, exported f32."""
    from rerank_core.export import export_checkpoint
    from rerank_core.tiny_model import build_checkpoint

    folder = tmp_path_factory.mktemp("bf16-weights")
    return export_checkpoint(
        build_checkpoint(folder / "checkpoint", weights="bfloat16"), folder / "export", dtypes=["f32"]
    )


def bf16_consts(xml) -> int:
    """How many of an IR's constants are stored in bf16."""
    layers = ElementTree.parse(xml).getroot().iter("layer")
    return sum(layer.get("type") == "Const" and layer.find("data").get("element_type") == "bf16" for layer in layers)


def test_a_bf16_checkpoints_weights_are_stored_bf16_and_an_f32_checkpoints_are_not(
    bf16_weight_export, tiny_export, tmp_path
):
    import openvino

    f32_xml, bf16_xml = (cached_ir(bf16_weight_export / "model.onnx", tmp_path, w) for w in ("f32", "bf16"))
    assert f32_xml != bf16_xml
    assert bf16_xml.with_suffix(".bin").stat().st_size < 0.6 * f32_xml.with_suffix(".bin").stat().st_size
    layers = list(ElementTree.parse(bf16_xml).getroot().iter("layer"))
    unpacked = [
        layer
        for layer in layers
        if layer.get("type") == "Convert" and layer.find("rt_info/attribute[@name='decompression']") is not None
    ]
    ops = openvino.Core().read_model(str(f32_xml)).get_ordered_ops()
    weighted = sum(
        op.get_type_name() == "MatMul" and op.input_value(1).get_node().get_type_name() == "Constant" for op in ops
    )
    head_row, embedding = 1, 1  # the yes−no head row is a difference, no bf16 value: it stays f32
    assert bf16_consts(bf16_xml) == len(unpacked) == weighted - head_row + embedding
    assert bf16_consts(f32_xml) == 0
    assert bf16_consts(cached_ir(tiny_export / "model.onnx", tmp_path)) == 0  # f32 weights: nothing bf16 holds


@needs_bf16
def test_stored_bf16_weights_move_no_score(bf16_weight_export, mixed_pairs, tmp_path):
    """Against the same graph with f32 weights computed in bf16, not one score moves."""
    import openvino

    core = openvino.Core()
    f32_weights = core.read_model(str(cached_ir(bf16_weight_export / "model.onnx", tmp_path, "f32")))
    scorer = OnnxScorer.open(bf16_weight_export, dtype="bf16", export_cache_dir=str(tmp_path))
    stored = scorer.score(mixed_pairs)
    compiled = core.compile_model(f32_weights, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    scorer.replace_session(OpenVinoSession(compiled))
    np.testing.assert_array_equal(scorer.score(mixed_pairs), stored)


@needs_bf16
def test_in_bf16_the_matmuls_run_bf16_and_the_residual_sums_f32(tiny_export):
    """What the marks are for: the compiled graph computes matmuls in bf16 but sums the residual stream in f32."""
    session = OpenVinoSession.open(tiny_export / "model.onnx", precision="bf16")
    marked = marked_adds(cached_ir(tiny_export / "model.onnx"))
    precisions: dict[str, set[str]] = {}
    for op in session.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        precisions.setdefault(kind, set()).add(precision)
        if marked & set(info["originalLayersNames"].astype(str).split(",")) and kind == "Eltwise":
            assert precision == "f32", op.get_friendly_name()
    assert precisions["FullyConnected"] == {"bf16"}
    assert "f32" in precisions["Eltwise"]


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("budget", [48, 100_000])
def test_openvino_f32_equals_the_official_recipe(tiny_export, official, mixed_pairs, share_prefix, budget):
    """The rewrite is exact: every batch composition, prefix sharing on and off, long rows in budget-sized pieces."""
    scorer = on_openvino(tiny_export, "f32", share_prefix=share_prefix, token_budget=budget)
    assert scorer.session.get_providers() == ["OpenVINO CPU (f32)"]
    np.testing.assert_allclose(scorer.score(mixed_pairs), official(mixed_pairs), atol=TOL)


def test_one_openvino_scorer_serves_threads_at_once(tiny_export, mixed_pairs):
    """Like an ONNX Runtime session, it may be called from several threads (its one infer request takes turns)."""
    from concurrent.futures import ThreadPoolExecutor

    scorer = on_openvino(tiny_export, "f32", token_budget=48)
    alone = [scorer.score([pair])[0] for pair in mixed_pairs]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda pair: scorer.score([pair])[0], mixed_pairs))
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_bf16_on_a_gpu_is_refused_naming_the_option():
    with pytest.raises(ConfigError, match="^dtype: bf16 is the CPU path.*device: cpu"):
        choose_precision(Dtype.BF16, "cuda")
    with pytest.raises(ConfigError, match="^images.encoder_dtype: bf16 is the CPU path"):
        choose_precision(Dtype.BF16, "cuda", "images.encoder_dtype")


def test_bf16_names_the_f32_graph_it_runs(tiny_export, tmp_path):
    folder = ModelFolder.read(tiny_export)
    graph = folder.choose_graph(Dtype.BF16, "cpu")
    assert graph.dtype is Dtype.BF16 and graph.path.name == "model.onnx"
    assert folder.choose_graph(None, "cpu").dtype is Dtype.F32  # never chosen unless named
    int8_only = ModelFolder(**{**folder.__dict__, "graphs": tuple(g for g in folder.graphs if g.dtype is Dtype.INT8)})
    with pytest.raises(Exception, match="no bf16 graph.*--dtype f32"):
        int8_only.choose_graph(Dtype.BF16, "cpu")


@needs_no_bf16
def test_bf16_without_bf16_instructions_runs_f32_and_says_why_once(tiny_export, mixed_pairs, caplog):
    with caplog.at_level(logging.INFO, logger="rerank_core"):
        scorer = OnnxScorer.open(tiny_export, dtype="bfloat16")
    lines = [r for r in caplog.records if "bf16" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and "AMX-BF16" in lines[0].getMessage()
    assert scorer.dtype is Dtype.F32 and scorer.session.get_providers() == ["CPUExecutionProvider"]
    f32 = OnnxScorer.open(tiny_export, dtype="f32").score(mixed_pairs)
    np.testing.assert_array_equal(scorer.score(mixed_pairs), f32)


def test_unset_dtype_is_exact_f32_on_every_cpu_and_one_line_says_what_runs_faster(
    tiny_export, official, mixed_pairs, caplog
):
    with caplog.at_level(logging.INFO, logger="rerank_core"):
        scorer = OnnxScorer.open(tiny_export)
    assert scorer.dtype is Dtype.F32 and scorer.session.get_providers() == ["CPUExecutionProvider"]
    np.testing.assert_allclose(scorer.score(mixed_pairs), official(mixed_pairs), atol=TOL)
    hints = [r.getMessage() for r in caplog.records if "faster here" in r.getMessage()]
    assert len(hints) == 1 and "dtype='int8' measured" in hints[0]  # the folder has an int8 graph
    assert ("dtype='bf16' measured" in hints[0]) == bf16_available()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rerank_core"):
        assert OnnxScorer.open(tiny_export, dtype="f32").dtype is Dtype.F32  # chosen by name: nothing to say
    assert not [r for r in caplog.records if "faster here" in r.getMessage()]


@needs_bf16
@pytest.mark.parametrize("budget", [48, 100_000])
def test_bf16_stays_near_the_official_recipe_and_keeps_its_order(tiny_export, official, mixed_pairs, budget):
    scorer = OnnxScorer.open(tiny_export, dtype="bf16", token_budget=budget)
    assert scorer.dtype is Dtype.BF16 and scorer.shares_prefix
    ours, reference = scorer.score(mixed_pairs), official(mixed_pairs)
    np.testing.assert_allclose(ours, reference, atol=BF16_TOL)
    assert spearmanr(ours, reference).statistic >= 0.98


# Qwen3-Reranker-0.6B's attention (16 query heads over 8 K/V heads of 128) on 2 small layers: enough for OpenVINO's bf16
# attention to show how far a call was padded (4e-4 with calls not padded to whole key blocks); the tiny model's 4
# heads of 16 never showed it.
WIDE_ATTENTION = dict(
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, hidden_size=128, initializer_range=0.1
)


@pytest.fixture(scope="module")
def wide_attention_export(tmp_path_factory):
    """A small model with the 0.6B's attention shape, exported f32."""
    from rerank_core.export import export_checkpoint
    from rerank_core.tiny_model import build_checkpoint

    folder = tmp_path_factory.mktemp("wide-attention")
    return export_checkpoint(
        build_checkpoint(folder / "checkpoint", shape=WIDE_ATTENTION), folder / "x", dtypes=["f32"]
    )


@needs_bf16
def test_a_bf16_score_does_not_depend_on_what_shares_its_call(wide_attention_export, mixed_pairs):
    """Padding, call-mates, call size and prefix sharing move no bf16 score beyond 1e-4: each pair scored alone, with
    every other pair in one call, in reverse order, in 48-token calls, with its query's prompt run once or per row."""
    whole = OnnxScorer.open(wide_attention_export, dtype="bf16", share_prefix=False, token_budget=100_000)
    alone = np.array([whole.score([pair])[0] for pair in mixed_pairs])
    for share_prefix in (True, False):
        for budget in (48, 100_000):
            scorer = OnnxScorer.open(
                wide_attention_export, dtype="bf16", share_prefix=share_prefix, token_budget=budget
            )
            np.testing.assert_allclose(scorer.score(mixed_pairs), alone, atol=TOL)
            np.testing.assert_allclose(scorer.score(mixed_pairs[::-1])[::-1], alone, atol=TOL)
    spread = OnnxScorer.open(wide_attention_export, dtype="f32").score(mixed_pairs)
    assert np.abs(alone - spread).max() > TOL  # it did run bf16


@needs_bf16
@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_a_bf16_chunked_score_is_the_aggregate_of_its_windows_scored_alone(wide_attention_export, aggregate):
    long = " ".join(f"passage {i} about cats, dogs and the weather in Paris." for i in range(40))
    pairs = [("what do cats like?", long), ("weather in Paris?", long[:500]), ("what do cats like?", "cats nap")]
    scorer = OnnxScorer.open(wide_attention_export, dtype="bf16", max_length=256, token_budget=512)
    spec = {"mode": "chunk", "window_tokens": 40, "overlap_tokens": 8, "aggregate": aggregate}
    chunked = scorer.prepare(pairs, long_documents=spec)
    scores = scorer.score_prepared([chunked])[0].scores
    windows = replace(chunked.payload, row_starts=None, spans=None)  # every window a pair of its own
    rows = len(windows.ids)
    one_per_window = Prepared([pairs[0]] * rows, None, windows.lengths, windows.truncated, windows)
    alone = np.array([scorer.score_prepared([one_per_window.select([r])])[0].scores[0] for r in range(rows)])
    starts = chunked.payload.row_starts
    assert np.diff(starts).tolist()[0] > 8  # the long document spans many windows
    for i in range(len(pairs)):
        window = alone[starts[i] : starts[i + 1]]
        assert abs(scores[i] - {"max": np.max, "mean": np.mean}[aggregate](window)) <= TOL, i


def test_a_cached_score_is_never_served_to_another_dtype(tiny_export, mixed_pairs):
    """The score cache's keys name the graph and the dtype: a pair scored in bf16 (or int8) is another entry."""
    keys = {}
    for dtype in ("f32", "bf16", "int8"):
        scorer = OnnxScorer.open(tiny_export, dtype=dtype)
        keys[scorer.dtype] = scorer.cache_keys(scorer.prepare(mixed_pairs))
    again = OnnxScorer.open(tiny_export, dtype="f32")
    assert again.cache_keys(again.prepare(mixed_pairs)) == keys[Dtype.F32]
    assert len(keys) == 3 or not BF16_CPU  # bf16 falls back to f32 where the CPU lacks it
    for a in keys.values():
        for b in keys.values():
            assert a is b or not set(a) & set(b)
