"""Qwen3-VL-Reranker's prompt and truncation (rerank_core.families.qwen3_vl.template) give the token ids of the
official recipe, built here independently: its message list rendered as Qwen3-VL's chat template renders it, image
pads expanded as its processor expands them, tokenized whole with Qwen's vocabulary by transformers, then cut by its
truncate_tokens_optimized rule over transformers' all_special_ids."""

import pytest
from transformers import PreTrainedTokenizerFast

from rerank_core.errors import InvalidInputError
from rerank_core.families.qwen3_vl.pixels import PixelBudget, image_tokens
from rerank_core.families.qwen3_vl.template import Side, check_texts, prompt, truncate
from rerank_core.qwen_tokenizer import qwen_tokenizer
from tests.rerank_core.test_vl_pixels import recipe_size

VISION_AND_CHAT = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]  # Qwen3-VL's additional_special_tokens


@pytest.fixture(scope="module")
def hf_tokenizer():
    """Qwen's vocabulary as Qwen3-VL-Reranker's tokenizer_config.json sets it up."""
    return PreTrainedTokenizerFast(
        tokenizer_object=qwen_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=VISION_AND_CHAT,
    )


def recipe_ids(tokenizer, query: dict, document: dict, instruction, max_length: int) -> list[int]:
    """The official recipe's input ids for one pair, sides as {"text": [...], "image": [(width, height), ...]}."""
    system = (
        "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
        'Note that the answer can only be "yes" or "no".'
    )
    contents = [
        {
            "type": "text",
            "text": "<Instruct>: "
            + (instruction or "Given a search query, retrieve relevant candidates that answer the query."),
        }
    ]
    for prefix, side in (("<Query>:", query), ("\n<Document>:", document)):
        contents.append({"type": "text", "text": prefix})
        if not side.get("text") and not side.get("image"):
            contents.append({"type": "text", "text": "NULL"})
            continue
        contents += [{"type": "image", "size": size} for size in side.get("image", [])]
        contents += [{"type": "text", "text": text} for text in side.get("text", [])]
    rendered = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
    for part in contents:  # the chat template: text as it is, an image as its vision markers
        if part["type"] == "text":
            rendered += part["text"]
        else:
            height, width = recipe_size(part["size"][1], part["size"][0])
            rendered += "<|vision_start|>" + "<|image_pad|>" * (height // 16 * (width // 16) // 4) + "<|vision_end|>"
    rendered += "<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    body, special = ids[:-5], set(tokenizer.all_special_ids)
    if len(body) > max_length:  # truncate_tokens_optimized
        keep, kept = max_length - sum(1 for i in body if i in special), []
        for i in body:
            if i in special or keep > 0:
                kept.append(i)
                keep -= i not in special
        body = kept
    return body + ids[-5:]


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
    want = recipe_ids(hf_tokenizer, query, document, instruction, max_length)
    assert ours(query, document, instruction, max_length, special) == want


def test_the_special_ids_are_qwens_first_fourteen_added_tokens(hf_tokenizer):
    assert sorted(hf_tokenizer.all_special_ids) == list(range(151643, 151657))  # <|endoftext|> … <|video_pad|>


def test_text_holding_a_control_token_is_refused_naming_the_input():
    check_texts(["plain text", "<think> is not a control token"], "query")
    with pytest.raises(InvalidInputError, match=r"documents\[4\]: text holds the control token <\|image_pad\|>"):
        check_texts(["ok", "smuggled <|image_pad|><|image_pad|>"], "documents[4]")
