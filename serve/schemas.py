"""HTTP request/response models of every rerank dialect the endpoint speaks: Cohere/Jina, DashScope (native and
OpenAI-compatible), Text Embeddings Inference, Infinity and vLLM's score API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from rerank_core.config import LongDocuments


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
    # Our extension: how documents longer than the window are scored, for this request (default: the model's).
    long_documents: LongDocuments | None = None

    _query_not_blank = field_validator("query")(_non_blank)

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_are_texts(cls, value: object) -> object:
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) and not (isinstance(item, dict) and isinstance(item.get("text"), str)):
                    raise ValueError(f'item {i} must be a string or an object {{"text": string}}')
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


class TeiRerankRequest(_Model):
    """POST /rerank with `texts`: Text Embeddings Inference's rerank request."""

    query: StrictStr
    texts: Annotated[list[StrictStr], Field(min_length=1)]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = False
    truncation_direction: Literal["left", "right", "Left", "Right"] = "right"

    _query_not_blank = field_validator("query")(_non_blank)


class TeiRank(_Model):
    """One item of TEI's rerank answer (a JSON list of these, best first)."""

    index: int
    score: float
    text: str | None = None


class TeiError(_Model):
    """TEI's error body."""

    error: str
    error_type: str


class InfinityRerankRequest(_Model):
    """POST /rerank with `documents`: Infinity's (Cohere-like) rerank request."""

    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    return_documents: StrictBool = False
    raw_scores: StrictBool = False
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(default=None, ge=1)

    _query_not_blank = field_validator("query")(_non_blank)


class InfinityRerankResult(_Model):
    """One scored document of Infinity's answer; the document is a plain string."""

    relevance_score: float
    index: int
    document: str | None = None


class TokenUsage(_Model):
    """Usage in the OpenAI style (Infinity, vLLM)."""

    prompt_tokens: int
    total_tokens: int
    completion_tokens: int | None = None


class InfinityRerankResponse(_Model):
    """Infinity's rerank answer, best first."""

    object: Literal["rerank"] = "rerank"
    results: list[InfinityRerankResult]
    model: str
    usage: TokenUsage
    id: str
    created: int


class VllmScoreRequest(_Model):
    """POST /score and /v1/score: vLLM's score API; text_1 against text_2 as 1:1, 1:N or N:N."""

    model: StrictStr | None = None
    text_1: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    text_2: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]


class VllmScoreData(_Model):
    """One pair's score in vLLM's answer, in input order."""

    index: int
    object: Literal["score"] = "score"
    score: float


class VllmScoreResponse(_Model):
    """vLLM's score answer."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[VllmScoreData]
    usage: TokenUsage


class CompatibleRerankRequest(_Model):
    """POST /compatible-api/v1/reranks: DashScope's OpenAI-compatible rerank request."""

    model: StrictStr
    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    instruct: StrictStr | None = None

    _query_not_blank = field_validator("query")(_non_blank)


class CompatibleRerankResponse(_Model):
    """DashScope's OpenAI-compatible rerank answer, best first."""

    id: str
    object: Literal["list"] = "list"
    model: str
    results: list[RerankResult]
    usage: Usage


class OpenAIErrorInfo(_Model):
    """The `error` object of OpenAI-style error bodies (vLLM, Infinity, DashScope's compatible mode)."""

    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class OpenAIError(_Model):
    """An OpenAI-style error body."""

    error: OpenAIErrorInfo
