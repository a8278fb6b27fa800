"""The official Qwen3-Reranker prompt template, and detection of input already formatted with it."""

from __future__ import annotations

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

_INSTRUCT_TAG = "<Instruct>: "
_QUERY_TAG = "\n<Query>: "
_DOCUMENT_TAG = "<Document>: "


def format_query(query: str, instruction: str | None = None) -> str:
    """Return `<Instruct>: {instruction}\\n<Query>: {query}\\n`, the seed's query formatting."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return f"{_INSTRUCT_TAG}{instruction}{_QUERY_TAG}{query}\n"


def format_document(doc: str) -> str:
    """Return `<Document>: {doc}`, the seed's document formatting."""
    return f"{_DOCUMENT_TAG}{doc}"


def is_formatted_query(query: str) -> bool:
    """True when `query` already has the `<Instruct>: …\\n<Query>: …\\n` shape."""
    return query.startswith(_INSTRUCT_TAG) and _QUERY_TAG in query and query.endswith("\n")


def is_formatted_document(doc: str) -> bool:
    """True when `doc` already starts with `<Document>: `."""
    return doc.startswith(_DOCUMENT_TAG)


def content_head(query: str, instruction: str | None = None) -> str:
    """The part of a pair's content before the document text: what truncation from the left keeps."""
    return (query if is_formatted_query(query) else format_query(query, instruction)) + _DOCUMENT_TAG


def format_content(query: str, document: str, instruction: str | None = None) -> str:
    """The user-turn content for one pair; pre-formatted parts are kept as they are, never wrapped twice.

    A pre-formatted query carries its own instruction, so `instruction` only applies to plain queries.
    """
    q = query if is_formatted_query(query) else format_query(query, instruction)
    d = document if is_formatted_document(document) else format_document(document)
    return q + d
