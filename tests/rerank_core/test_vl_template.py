"""Qwen3-VL-Reranker's prompt and truncation (rerank_core.families.qwen3_vl.template) give the token ids of the
official recipe, built independently (tests/oracle_vl.py): its message list rendered as Qwen3-VL's chat template
renders it, image pads expanded as its processor expands them, tokenized whole with Qwen's vocabulary by transformers,
then cut by its truncate_tokens_optimized rule over transformers' all_special_ids."""

import pytest
from transformers import PreTrainedTokenizerFast

from rerank_core.errors import InvalidInputError
from rerank_core.families.qwen3_vl.pixels import PixelBudget, image_tokens
from rerank_core.families.qwen3_vl.template import Side, check_texts, prompt, truncate
from rerank_core.qwen_tokenizer import qwen_tokenizer
from rerank_core.tiny_vl_model import VL_SPECIAL_TOKENS
from tests.oracle_vl import recipe_ids


@pytest.fixture(scope="module")
def hf_tokenizer():
    """Qwen's vocabulary as Qwen3-VL-Reranker's tokenizer_config.json sets it up."""
    return PreTrainedTokenizerFast(
        tokenizer_object=qwen_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=VL_SPECIAL_TOKENS,
    )


def ours(query: dict, document: dict, instruction, max_length: int, special: frozenset) -> list[int]:
    def side(s):
        tokens = tuple(image_tokens(w, h, PixelBudget(), "side") for w, h in s.get("image", []))
        return Side(texts=tuple(s.get("text", [])), image_tokens=tokens)

    ids = qwen_tokenizer().encode(prompt(side(query), side(document), instruction), add_special_tokens=False).ids
    return truncate(ids, max_length, special)


CASES = [
    ({"text": ["What is machine learning?"]}, {"text": ["ML learns from data."]}, None, 10_240),
    ({"text": ["a red car"]}, {"image": [(640, 480)]}, "Find the photo", 10_240),
    ({"image": [(300, 200)]}, {"text": ["A photo of a cat", " on a sofa"]}, "", 10_240),
    ({"text": ["compare"], "image": [(100, 900), (1280, 720)]}, {"image": [(33, 17)], "text": ["x"]}, None, 10_240),
    ({}, {"text": ["nothing asked"]}, None, 10_240),
    ({"text": ["What"]}, {"text": ["is it?"]}, "Where merges cross joins:", 10_240),  # BPE across the seams
    ({"text": ["long query " * 40]}, {"image": [(640, 480)], "text": ["document " * 200]}, None, 400),
    ({"text": ["q"]}, {"text": ["d " * 50]}, None, 8),  # fewer than the special tokens: template words cut too
]


@pytest.mark.parametrize(("query", "document", "instruction", "max_length"), CASES)
def test_our_ids_are_the_recipes(hf_tokenizer, query, document, instruction, max_length):
    special = frozenset(hf_tokenizer.all_special_ids)
    sizes = [*query.get("image", []), *document.get("image", [])]
    want = recipe_ids(hf_tokenizer, query, document, instruction, max_length, sizes)
    assert ours(query, document, instruction, max_length, special) == want


def test_the_special_ids_are_qwens_first_fourteen_added_tokens(hf_tokenizer):
    assert sorted(hf_tokenizer.all_special_ids) == list(range(151643, 151657))  # <|endoftext|> … <|video_pad|>


def test_text_holding_a_control_token_is_refused_naming_the_input():
    check_texts(["plain text", "<think> is not a control token"], "query")
    with pytest.raises(InvalidInputError, match=r"documents\[4\]: text holds the control token <\|image_pad\|>"):
        check_texts(["ok", "smuggled <|image_pad|><|image_pad|>"], "documents[4]")
