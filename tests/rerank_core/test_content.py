"""Pairs as content: plain strings still pairs, content of one text part read as its text, other content left to the
model family (the text family refuses it naming the side), cache digests equal exactly when the content is."""

import pytest

from rerank_core import InvalidInputError
from rerank_core.content import Content, Pair, Text, digest, estimate_tokens, validate_pairs


def test_strings_and_one_text_part_are_the_same_pair():
    pairs = validate_pairs([("q", "d"), ["q", "d"], Pair("q", Content((Text("d"),))), (Content((Text("q"),)), "d")])
    assert pairs == [Pair("q", "d")] * 4 and all(isinstance(p, Pair) for p in pairs)
    query, document = pairs[0]  # still unpacks as a tuple
    assert (query, document) == ("q", "d")


def test_content_of_several_parts_passes_validation_as_content():
    parts = Content((Text("a"), Text("b")))
    assert validate_pairs([("q", parts)]) == [Pair("q", parts)]


@pytest.mark.parametrize(
    "pair,field",
    [(("", "d"), "pairs[0].query"), ((Content(()), "d"), "pairs[0].query"), (("q", 3), "pairs[0].document")],
)
def test_bad_sides_name_the_field(pair, field):
    with pytest.raises(InvalidInputError) as info:
        validate_pairs([pair])
    assert info.value.field == field


def test_the_text_family_refuses_content_parts_naming_the_side(tiny_reranker):
    parts = Content((Text("a"), Text("b")))
    with pytest.raises(InvalidInputError) as info:
        tiny_reranker.score_pairs([("q", "d"), ("q", parts)])
    assert info.value.field == "pairs[1].document" and "text only" in str(info.value)
    single = tiny_reranker.score_pairs([("q", Content((Text("d"),)))])
    assert single.tolist() == tiny_reranker.score_pairs([("q", "d")]).tolist()


def test_digests_are_equal_exactly_when_the_content_is():
    assert digest("i", "q", "d") == digest("i", "q", Content((Text("d"),)))
    assert digest("i", "q", "ab") != digest("i", "q", Content((Text("a"), Text("b"))))  # parts are not joined
    assert digest("i", "qd", "") != digest("i", "q", "d")  # lengths are part of it
    assert estimate_tokens(Content((Text("abc"), Text("def")))) == 2 * estimate_tokens("abc")
