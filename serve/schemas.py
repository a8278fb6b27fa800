"""HTTP request/response models of every rerank dialect the endpoint speaks: Cohere/Jina (and Voyage's shape on the
same route), DashScope (native and OpenAI-compatible), Text Embeddings Inference, Infinity, vLLM's score API, NVIDIA
NIM and Mixedbread."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from rerank_core.config import LongDocuments


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _non_blank_text(value: object) -> object:
    return _non_blank(value) if isinstance(value, str) else value


class _Model(BaseModel):
    # Clients of these protocols send extra fields (rank_fields, max_chunks_per_doc, …): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class RankOptions(_Model):
    """Options every dialect takes beside its own (our extensions where the dialect has no such field)."""

    # llama.cpp names it `instruction`, SGLang and DashScope `instruct`: either is taken.
    instruction: StrictStr | None = Field(default=None, validation_alias=AliasChoices("instruction", "instruct"))
    # Results scoring below it are dropped (after top_n), compared with the value the answer carries: the relevance
    # in 0..1, or the logit where the dialect answers logits (NIM, raw_scores).
    score_threshold: StrictFloat | StrictInt | None = None
    # Each document is cut after this many of its own tokens before it is scored (Cohere v2's field).
    max_tokens_per_doc: StrictInt | None = Field(default=None, ge=1)


Document = StrictStr | dict[str, Any]  # a text, or an object ranked on named fields (serve/documents.py)
PartList = Annotated[list[dict[str, Any]], Field(min_length=1)]  # content parts: {"type": "text" | "image_url", …}


class ContentObject(BaseModel):
    """vLLM's multimodal item: `{"content": [parts]}` (serve/documents.py reads the parts)."""

    model_config = ConfigDict(extra="ignore")
    content: PartList


RankFields = Annotated[list[StrictStr], Field(min_length=1)]


def _texts_or_objects(value: object) -> object:
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str | dict):
                raise ValueError(f"item {i} must be a string or an object")
    return value


class RerankRequest(RankOptions):
    """POST /v1/rerank (Cohere, Jina, vLLM shape); documents may be objects ranked on `rank_fields` (Cohere v1)."""

    model: StrictStr | None = None
    query: StrictStr
    documents: Annotated[list[Document], Field(min_length=1)]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False
    rank_fields: RankFields | None = None
    # Our extension: how documents longer than the window are scored, for this request (default: the model's).
    long_documents: LongDocuments | None = None

    _query_not_blank = field_validator("query")(_non_blank)
    _documents_are_texts_or_objects = field_validator("documents", mode="before")(_texts_or_objects)


class RerankResult(_Model):
    """One scored document of a /v1/rerank answer; an object document comes back as it was sent."""

    index: int
    relevance_score: float
    document: dict[str, Any] | None = None  # {text} for a text


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

    # qwen3-vl-rerank's: a text, or an object of `text`, `image` (URL or base64) or `video` (refused for now)
    query: StrictStr | dict[str, Any]
    documents: Annotated[list[StrictStr | dict[str, Any]], Field(min_length=1)]

    _query_not_blank = field_validator("query")(_non_blank_text)


class DashScopeParameters(RankOptions):
    """`parameters` of a DashScope TextReRank request."""

    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False


class DashScopeRequest(_Model):
    """POST /api/v1/services/rerank/text-rerank/text-rerank, as the dashscope SDK sends it."""

    model: StrictStr
    input: DashScopeInput
    parameters: DashScopeParameters = DashScopeParameters()


class DashScopeOutput(_Model):
    """`output` of a DashScope TextReRank answer."""

    results: list[RerankResult]


class DashScopeResponse(_Model):
    """A DashScope TextReRank answer (with the model that made it, which DashScope's leaves out)."""

    output: DashScopeOutput
    usage: Usage
    request_id: str
    model: str


class DashScopeError(_Model):
    """DashScope's error body, sent with the HTTP status."""

    code: str
    message: str
    request_id: str


class TeiRerankRequest(RankOptions):
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


class InfinityRerankRequest(RankOptions):
    """POST /rerank with `documents`: Infinity's (Cohere-like) rerank request."""

    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    return_documents: StrictBool = False
    raw_scores: StrictBool = False
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(default=None, ge=1)

    _query_not_blank = field_validator("query")(_non_blank)


class PlainResult(_Model):
    """One scored document of Infinity's and Voyage's answers; the document is a plain string."""

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
    results: list[PlainResult]
    model: str
    usage: TokenUsage
    id: str
    created: int


class VllmScoreRequest(RankOptions):
    """POST /score and /v1/score: vLLM's score API; text_1 against text_2 as 1:1, 1:N or N:N."""

    model: StrictStr | None = None
    # Each side also as vLLM's multimodal `{"content": [parts]}`: one item, text and images.
    text_1: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | ContentObject
    text_2: StrictStr | Annotated[list[StrictStr], Field(min_length=1)] | ContentObject


class VllmRerankRequest(RankOptions):
    """POST /rerank or /v1/rerank with content parts: vLLM's (`{"content": [parts]}`, one document; `documents` a
    list of them or one) and SGLang's (a list of parts per side) multimodal rerank."""

    model: StrictStr | None = None
    query: StrictStr | ContentObject | PartList
    documents: Annotated[list[StrictStr | ContentObject | PartList], Field(min_length=1)] | ContentObject
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = True  # vLLM answers each document

    _query_not_blank = field_validator("query")(_non_blank_text)


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


class CompatibleRerankRequest(RankOptions):
    """POST /compatible-api/v1/reranks: DashScope's OpenAI-compatible rerank request."""

    model: StrictStr
    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False

    _query_not_blank = field_validator("query")(_non_blank)


class CompatibleRerankResponse(_Model):
    """DashScope's OpenAI-compatible rerank answer, best first."""

    id: str
    object: Literal["list"] = "list"
    model: str
    results: list[RerankResult]
    usage: Usage


class VoyageRerankRequest(RankOptions):
    """Voyage's rerank request (POST /v1/rerank with `top_k` or `truncation`, as the voyageai SDK sends it)."""

    model: StrictStr | None = None
    query: StrictStr
    documents: Annotated[list[StrictStr], Field(min_length=1)]
    top_k: StrictInt | None = Field(default=None, ge=1)
    truncation: StrictBool = True  # false: refuse documents over the window instead of cutting them
    return_documents: StrictBool = False

    _query_not_blank = field_validator("query")(_non_blank)


class VoyageRerankResponse(_Model):
    """Voyage's rerank answer, best first."""

    object: Literal["list"] = "list"
    data: list[PlainResult]
    model: str
    usage: Usage


class NimText(_Model):
    """A text as NIM wraps it: {text}."""

    text: StrictStr


class NimRankingRequest(RankOptions):
    """POST /v1/ranking: NVIDIA NIM's reranking request (NVIDIARerank in LangChain and LlamaIndex, Haystack's
    NvidiaRanker)."""

    model: StrictStr | None = None
    query: NimText
    passages: Annotated[list[NimText], Field(min_length=1)]
    truncate: Literal["NONE", "END"] = "NONE"  # NIM's default: refuse passages over the window

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: NimText) -> NimText:
        _non_blank(value.text)
        return value


class NimRanking(_Model):
    """One passage of NIM's answer: its index and logit, best first."""

    index: int
    logit: float


class NimRankingResponse(_Model):
    """NIM's ranking answer (with the model and usage, which NIM's leaves out)."""

    rankings: list[NimRanking]
    model: str
    usage: Usage


class MixedbreadRerankRequest(RankOptions):
    """POST /v1/reranking: Mixedbread's rerank request; inputs are texts or objects ranked on `rank_fields`."""

    model: StrictStr | None = None
    query: StrictStr
    input: Annotated[list[Document], Field(min_length=1)]
    rank_fields: RankFields | None = None
    top_k: StrictInt | None = Field(default=None, ge=1)
    return_input: StrictBool = False
    rewrite_query: StrictBool = False  # taken and ignored: the query is scored as sent

    _query_not_blank = field_validator("query")(_non_blank)
    _input_is_texts_or_objects = field_validator("input", mode="before")(_texts_or_objects)


class MixedbreadResult(_Model):
    """One scored input of Mixedbread's answer, as it was sent when asked for."""

    index: int
    score: float
    input: Any = None
    object: Literal["rank_result"] = "rank_result"


class MixedbreadRerankResponse(_Model):
    """Mixedbread's rerank answer, best first."""

    usage: TokenUsage
    model: str
    data: list[MixedbreadResult]
    object: Literal["list"] = "list"
    top_k: int
    return_input: bool


class ModelCard(_Model):
    """One model of the OpenAI model list."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "qwen-rerank"
    root: str


class ModelList(_Model):
    """GET /v1/models: the model this endpoint serves, as OpenAI lists models (NIM clients read it)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIErrorInfo(_Model):
    """The `error` object of OpenAI-style error bodies (vLLM, Infinity, DashScope's compatible mode)."""

    message: str
    type: str
    param: str | None = None
    code: int | str | None = None


class OpenAIError(_Model):
    """An OpenAI-style error body."""

    error: OpenAIErrorInfo
