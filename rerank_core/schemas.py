"""HTTP request/response models shared by the Serve endpoint and its clients: Cohere/Jina shape and DashScope's."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class _Model(BaseModel):
    # Clients of these protocols send extra fields (rank_fields, max_chunks_per_doc, …): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class TextDocument(_Model):
    """A document given as an object, as Cohere and Jina allow."""

    text: StrictStr


class RerankRequest(_Model):
    """POST /v1/rerank (Cohere, Jina, vLLM shape)."""

    model: StrictStr | None = None
    query: StrictStr
    documents: Annotated[list[StrictStr | TextDocument], Field(min_length=1)]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    instruction: StrictStr | None = None

    _query_not_blank = field_validator("query")(_non_blank)

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_are_texts(cls, value: object) -> object:
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) and not (isinstance(item, dict) and isinstance(item.get("text"), str)):
                    raise ValueError(f"item {i} must be a string or an object {{\"text\": string}}")
        return value

    def texts(self) -> list[str]:
        """The documents as plain strings."""
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(_Model):
    """One scored document of a /v1/rerank answer."""

    index: int
    relevance_score: float
    document: TextDocument | None = None


class Usage(_Model):
    """Tokens the request cost."""

    total_tokens: int


class RerankResponse(_Model):
    """The /v1/rerank answer: results sorted by relevance, best first."""

    id: str
    model: str
    results: list[RerankResult]
    usage: Usage


class DashScopeInput(_Model):
    """`input` of a DashScope TextReRank request."""

    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]

    _query_not_blank = field_validator("query")(_non_blank)


class DashScopeParameters(_Model):
    """`parameters` of a DashScope TextReRank request."""

    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    instruct: StrictStr | None = None


class DashScopeRequest(_Model):
    """POST /api/v1/services/rerank/text-rerank/text-rerank, as the dashscope SDK sends it."""

    model: StrictStr
    input: DashScopeInput
    parameters: DashScopeParameters = DashScopeParameters()


class DashScopeOutput(_Model):
    """`output` of a DashScope TextReRank answer."""

    results: list[RerankResult]


class DashScopeResponse(_Model):
    """A DashScope TextReRank answer."""

    output: DashScopeOutput
    usage: Usage
    request_id: str


class DashScopeError(_Model):
    """DashScope's error body, sent with the HTTP status."""

    code: str
    message: str
    request_id: str
