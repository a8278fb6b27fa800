"""Qwen's real vocabulary: the tokenizer rebuilt from dashscope's BPE ranks is Qwen3's, and a small random model with
it scores like the official recipe where BPE merges cross the template's seams."""

import subprocess
import sys

import numpy as np
import pytest

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.export import export_checkpoint
from rerank_core.families.qwen3.template import PREFIX, SUFFIX
from rerank_core.qwen_tokenizer import VOCAB_SIZE, qwen_tokenizer
from rerank_core.tiny_model import build_checkpoint
from tests.oracle import OfficialRecipe

TOL = 1e-4
# Pairs whose tokens merge across the template's seams (`<Query>: `, `\n<Document>: `, the suffix): trailing spaces
# and newlines, leading spaces, CJK, emoji, digits, NFD text (NFC makes "e" + U+0301 one "é"), and a query that
# differs from another only after a shared prefix of the same word.
SEAM_PAIRS = [
    ("what is ML?   ", "  Machine learning is a subset of AI.\n\n"),
    ("what is ML?\n", "\nML algorithms learn from data   "),
    ("what is ML", "ML"),
    ("机器学习是什么？", "机器学习是人工智能的一个分支。"),
    ("咖啡怎么做", "Coffee ☕ is brewed from beans 🫘🙂"),
    ("cafe\u0301 near me", "The cafe\u0301 serves cre\u0300me bru\u0302le\u0301e."),
    ("Version 12345 released?", "v1.2.3 — released 2024-05-06, 99.9% uptime"),
    ("what is ML?   ", "Pizza is a popular food."),
    ("emoji 🙂🙂", "🙂🙂🙂 " * 40),
    ("what is ML?\n", "Deep learning " * 60),
]


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    return build_checkpoint(tmp_path_factory.mktemp("qwen-vocab-ckpt"), vocabulary="qwen")


@pytest.fixture(scope="module")
def qwen_export(qwen_checkpoint, tmp_path_factory):
    return export_checkpoint(
        qwen_checkpoint,
        tmp_path_factory.mktemp("x") / "qv",
        dtypes=["f32"],
        paged_dtypes=["f32"],  # the CUDA and fused graphs split prompts as the default graph does (tiny vocab tests)
    )


@pytest.fixture(scope="module")
def official_qwen(qwen_checkpoint):
    return OfficialRecipe(qwen_checkpoint)


def test_the_rebuilt_tokenizer_has_qwen3s_ids():
    tokenizer = qwen_tokenizer()
    ids = lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.get_vocab_size() == VOCAB_SIZE == 151669
    assert ids("yes") == [9693] and ids("no") == [2152] and ids("Hello world") == [9707, 1879]
    assert ids(PREFIX)[:3] == [151644, 8948, 198] and ids(PREFIX)[-3:] == [151644, 872, 198]
    assert ids(SUFFIX) == [151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]
    assert ids("2024") == [17, 15, 17, 19]  # single digits, as Qwen splits them
    assert ids("cafe\u0301") == ids("café")  # NFC


def test_the_vocabulary_is_read_without_importing_the_dashscope_sdk():
    code = "import sys, rerank_core.qwen_tokenizer as q; q.qwen_tokenizer(); print('dashscope' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.slow
def test_our_token_ids_are_the_official_recipes(qwen_export, official_qwen):
    scorer = OnnxScorer.open(qwen_export, max_length=128)
    ours = scorer.prepare(SEAM_PAIRS).payload.ids
    theirs = official_qwen.token_ids(SEAM_PAIRS, max_length=128)
    assert [row.tolist() for row in ours] == theirs
    assert (scorer.yes_id, scorer.no_id) == (9693, 2152)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"share_prefix": False},
        {"graph_variant": "paged"},
        {"token_budget": 64, "max_rows_per_call": 3},
        {"max_length": 80},
    ],
)
def test_seam_pairs_score_like_the_official_recipe(qwen_export, official_qwen, options):
    scorer = OnnxScorer.open(qwen_export, **options)
    want = official_qwen.score(SEAM_PAIRS, max_length=options.get("max_length", 8192))
    np.testing.assert_allclose(scorer.score(SEAM_PAIRS), want, atol=TOL)
