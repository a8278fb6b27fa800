"""The prompt template is the official one, and pre-formatted input is never wrapped twice."""

from rerank_core.families.qwen3.template import (
    DEFAULT_INSTRUCTION,
    PREFIX,
    SUFFIX,
    format_content,
    format_document,
    format_query,
    is_formatted_document,
    is_formatted_query,
)


def test_template_strings_are_the_official_ones():
    assert PREFIX == (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    assert SUFFIX == "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert DEFAULT_INSTRUCTION == "Given a web search query, retrieve relevant passages that answer the query"


def test_seed_formatters():
    assert format_query("q") == f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: q\n"
    assert format_query("q", "Find code") == "<Instruct>: Find code\n<Query>: q\n"
    assert format_document("d") == "<Document>: d"


def test_content_matches_official_format():
    assert format_content("q", "d", "I") == "<Instruct>: I\n<Query>: q\n<Document>: d"


def test_preformatted_input_is_not_wrapped_twice():
    plain = format_content("what is ML?", "ML learns.")
    assert format_content(format_query("what is ML?"), format_document("ML learns.")) == plain
    assert format_content(format_query("what is ML?"), "ML learns.") == plain
    assert format_content("what is ML?", format_document("ML learns.")) == plain


def test_preformatted_query_keeps_its_own_instruction():
    q = format_query("q", "Mine")
    assert format_content(q, "d", instruction="Other") == "<Instruct>: Mine\n<Query>: q\n<Document>: d"


def test_detection_is_strict_enough():
    assert is_formatted_query(format_query("x"))
    assert not is_formatted_query("<Instruct>: no query tag\n")
    assert not is_formatted_query("What is <Query>: ?")
    assert is_formatted_document("<Document>: x")
    assert not is_formatted_document("A <Document>: inside")
