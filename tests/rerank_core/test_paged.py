"""Layout `paged`: packed tokens, and the rows of a call that start alike (a query's documents) attending to one
computation of their shared prompt in whole cache blocks; exact against the official recipe in every composition."""

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.families.qwen3.cuda_only import standard_equivalent
from rerank_core.families.qwen3.layouts import PagedLayout, flash_block_tokens
from rerank_core.families.qwen3.packing import pack_call, shared_groups
from rerank_core.tokenization import common_prefix_length

pytestmark = pytest.mark.slow
TOL = 1e-4
# Long enough that a query's prompt fills whole blocks of the GPU's block size (256 tokens at the tiny model's
# head_dim of 16) on the tiny vocabulary.
GPU_BLOCK = flash_block_tokens(16)
LONG_INSTRUCTION = "Judge carefully whether the passage answers the question, weighing every detail. " * 12


def paged_scorer(export, block_size: int, share: bool, **options) -> OnnxScorer:
    """A `paged` scorer whose calls use cache blocks of `block_size` tokens."""
    scorer = OnnxScorer.open(export, graph_variant="paged", share_prefix=share, **options)
    scorer.layout = PagedLayout(scorer.session, scorer.yes_id, scorer.no_id, share, block_size)
    return scorer


def rows_of(scorer: OnnxScorer, pairs, instruction=None) -> list[np.ndarray]:
    return scorer.prepare(pairs, instruction=instruction).payload.ids


@pytest.mark.parametrize("block_size", [4, 16, GPU_BLOCK])
@pytest.mark.parametrize("share", [True, False])
def test_sharing_inside_a_call_scores_as_the_official_recipe(tiny_export, official, mixed_pairs, block_size, share):
    """Three queries' documents in one call, in calls of 3 rows, one at a time, reversed; a long instruction so
    that even 256-token blocks are shared."""
    expected = official(mixed_pairs, LONG_INSTRUCTION)
    scorer = paged_scorer(tiny_export, block_size, share, instruction=LONG_INSTRUCTION)
    np.testing.assert_allclose(scorer.score(mixed_pairs), expected, atol=TOL)
    np.testing.assert_allclose(scorer.score(mixed_pairs[::-1])[::-1], expected, atol=TOL)
    alone = np.array([scorer.score([pair])[0] for pair in mixed_pairs[:4]])
    np.testing.assert_allclose(alone, expected[:4], atol=TOL)
    small = paged_scorer(tiny_export, block_size, share, instruction=LONG_INSTRUCTION, max_rows_per_call=3)
    np.testing.assert_allclose(small.score(mixed_pairs), expected, atol=TOL)


def test_f16_sharing_stays_close_to_official(tiny_export, official, mixed_pairs):
    scorer = paged_scorer(tiny_export, 16, True, dtype="f16")
    np.testing.assert_allclose(scorer.score(mixed_pairs), official(mixed_pairs), atol=1e-2)


def test_a_querys_documents_share_its_prompt_and_lone_queries_what_they_have_in_common(tiny_export, mixed_pairs):
    """Small blocks: each query's documents share its whole prompt. 256-token blocks: what fills whole blocks —
    here the long instruction before the queries, shared by all three. One document per query: the system prompt and
    the default instruction."""
    scorer = OnnxScorer.open(tiny_export, graph_variant="paged")
    rows = rows_of(scorer, mixed_pairs, LONG_INSTRUCTION)
    by_query = [list(range(q, len(rows), 3)) for q in range(3)]
    assert sorted(sorted(m) for _, m in shared_groups(rows, 4)) == by_query
    ((length, members),) = shared_groups(rows, GPU_BLOCK)
    assert sorted(members) == list(range(len(rows))) and length >= GPU_BLOCK
    for block_size in (4, GPU_BLOCK):
        for length, members in shared_groups(rows, block_size):
            assert length % block_size == 0
            assert all((rows[m][:length] == rows[members[0]][:length]).all() and len(rows[m]) > length for m in members)
    shared, whole = pack_call(rows, 16, True), pack_call(rows, 16, False)
    assert len(shared.input_ids) < 0.5 * len(whole.input_ids) == 0.5 * sum(len(r) for r in rows)
    lone = [rows_of(scorer, [(q, "the same document")])[0] for q in ("a", "b c", "d e f")]
    common = min(common_prefix_length(lone[0], row) for row in lone[1:])  # system prompt and instruction
    ((length, members),) = shared_groups(lone, 4)
    assert sorted(members) == [0, 1, 2] and length == common - common % 4 >= len(scorer.tokenizer.prefix_ids) - 3


def test_blocks_are_what_onnx_runtimes_flash_path_reads_at_the_models_head_dim(tiny_export):
    assert OnnxScorer.open(tiny_export, graph_variant="paged").layout.block_size == 256  # head_dim 16
    assert [flash_block_tokens(d) for d in (64, 128, 256)] == [256, 128, 64]  # Qwen3: 128


def test_a_packed_call_points_each_row_at_its_prompts_blocks(tiny_export, mixed_pairs):
    scorer = OnnxScorer.open(tiny_export, graph_variant="paged")
    rows = rows_of(scorer, mixed_pairs[:6])
    call = pack_call(rows, 4, True)
    groups = shared_groups(rows, 4)
    sequences = len(groups) + len(rows)
    assert call.cumulative_sequence_length.shape == (sequences + 1,) and call.block_table.shape[0] == sequences
    for g, (length, members) in enumerate(groups):
        assert (
            call.past_seqlens[g] == 0
            and call.cumulative_sequence_length[g + 1] - call.cumulative_sequence_length[g] == length
        )
        prompt_blocks = call.block_table[g, : length // 4]
        for m in members:
            assert call.past_seqlens[len(groups) + m] == length
            assert (call.block_table[len(groups) + m, : length // 4] == prompt_blocks).all()
    np.testing.assert_array_equal(call.input_ids[call.last_index], [r[-1] for r in rows])
    used = Counter(
        int(b) for i, s in enumerate(call.block_table) for b in s[: -(-(int(call.past_seqlens[i]) + len(rows[0])) // 4)]
    )
    assert call.num_blocks == max(used) + 1
    assert tuple(call.attention_metadata) == (
        np.diff(call.cumulative_sequence_length).max(),
        (np.diff(call.cumulative_sequence_length) + call.past_seqlens).max(),
    )


def test_paged_graph_is_one_paged_attention_per_layer_on_the_packed_qkv(tiny_export):
    """Inputs: packed ids, lengths, block table, the two caches, host-side bounds, scored positions. Per layer one
    PagedAttention reading the QKV MatMul as it is, q/k norms inside, its caches chained layer to layer; the CPU
    provider has no kernel for it, and runs the standard equivalent (no PagedAttention left) instead."""
    config = json.loads((tiny_export / "config.json").read_text())
    layers = config["num_hidden_layers"]
    graph = onnx.load(str(tiny_export / "model_paged_f16.onnx")).graph
    assert [i.name for i in graph.input] == [
        "input_ids",
        "cumulative_sequence_length",
        "past_seqlens",
        "block_table",
        "key_cache",
        "value_cache",
        "attention_metadata",
        "last_index",
    ]
    paged = [n for n in graph.node if n.op_type == "PagedAttention"]
    producer = {out: node for node in graph.node for out in node.output}
    assert [n.name for n in paged] == [f"PagedAttention_{i}" for i in range(layers)]
    for layer, node in enumerate(paged):
        assert producer[node.input[0]].op_type == "MatMul" and not any(node.input[1:3])
        assert [name.rsplit(".", 2)[-2] for name in node.input[12:14]] == ["q_norm", "k_norm"]
        assert node.input[16] == "attention_metadata" and not node.input[10]  # slots derived, bounds from the host
        caches = ["key_cache", "value_cache"] if layer == 0 else list(paged[layer - 1].output[1:3])
        assert list(node.input[3:5]) == caches
    count = Counter(n.op_type for n in graph.node)
    assert count["MatMul"] + count["Gemm"] == 4 * layers + 1  # q+k+v, o, gate+up, down; the yes−no direction
    assert not count.keys() & {"GroupQueryAttention", "Attention", "Softmax"}
    with pytest.raises(Exception, match="PagedAttention"):
        ort.InferenceSession(str(tiny_export / "model_paged_f16.onnx"), providers=["CPUExecutionProvider"])
    standard = Counter(n.op_type for n in standard_equivalent(tiny_export / "model_paged_f16.onnx").graph.node)
    assert "PagedAttention" not in standard and standard["Attention"] == layers
