"""The model config and the typed options of each backend: YAML, CLI and `from_pretrained` all end up here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .dtypes import Dtype
from .errors import ConfigError, InvalidInputError

T = TypeVar("T", bound="StrictModel")

PREFIX_CACHE_BYTES = 64 * 1024 * 1024  # ≈ 4 queries' prompt prefixes at the 0.6B shape (229 KB of K/V a token)
# Rows × longest sequence per model call when `token_budget` is unset. Small calls stay in the CPU's caches: on the
# 0.6B shape, int8 scores 13% more pairs/s at 256 tokens per call than at 512 and 29% more than at 1024 (f32: within
# ±3% of 512). A GPU wants large calls: on an H200, f16, 65,536 tokens and 256 rows a call scored 855 ~300-token
# pairs/s and 2,657 ~30-token ones against 763 and 1,932 at 16,384 and 32 (bench/gpu/scoring.py; more: no gain).
TOKEN_BUDGET = {"cpu": 256, "cuda": 65536}
MAX_ROWS_PER_CALL = {"cpu": 32, "cuda": 256}
# The smallest piece of a long pair a call computes ahead (a scheduler's bulk calls stay short). Every call reads all
# the weights once: at the 0.6B shape on a 2-core CPU, int8 took 48 ms for 1 token, 7.3 ms a token at 32, 5.9 at 64
# and 5.3 at 256 (f32: 122 ms; 11.6, 8.7, 8.0).
PREFILL_CHUNK_TOKENS = 64


def describe_errors(exc: ValidationError) -> str:
    """One line per pydantic error: the key path and the reason."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, and errors name the key path."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    @classmethod
    def from_dict(cls: type[T], data: Any, source: str = "config") -> T:
        """Validate `data`; raise ConfigError naming `source` and each bad key path."""
        try:
            return cls.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {describe_errors(exc)}") from None

    @classmethod
    def from_yaml(cls: type[T], path: str | Path) -> T:
        """Load and validate a YAML file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def part_of(cls: type[T], config: BaseModel) -> T:
        """This section's fields taken from a config that embeds them."""
        return cls.model_validate(config.model_dump(include=set(cls.model_fields)))


class LongDocuments(StrictModel):
    """What happens to a document longer than the window: cut (today's default), or scored in overlapping windows
    of its tokens whose scores are aggregated."""

    mode: Literal["truncate", "chunk"] = "truncate"
    window_tokens: int | None = Field(
        default=None, ge=1, description="document tokens per window; None (and at most): what fits max_length"
    )
    overlap_tokens: int | None = Field(default=None, ge=0, description="tokens two windows share; None: 1/8 window")
    aggregate: Literal["max", "mean", "first"] = Field(
        default="max", description="a document's score: its best window's, the mean of its windows', or the first's"
    )
    max_windows: int = Field(default=16, ge=1, description="windows per document, at most; the rest is cut")

    @model_validator(mode="after")
    def _overlap_below_window(self) -> LongDocuments:
        window, overlap = self.window_tokens, self.overlap_tokens
        if window is not None and overlap is not None and overlap >= window:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be < window_tokens ({self.window_tokens})")
        return self

    @classmethod
    def of(cls, value: LongDocumentsSetting) -> LongDocuments | None:
        """A per-call setting: a LongDocuments, its dict, a mode name ('chunk', 'truncate'), or None."""
        if value is None or isinstance(value, LongDocuments):
            return value
        try:
            return cls.model_validate({"mode": value} if isinstance(value, str) else value)
        except ValidationError as exc:
            raise InvalidInputError("long_documents", describe_errors(exc)) from None


# What callers may pass per call: the settings, their dict, a mode name, or None (the model's).
LongDocumentsSetting = LongDocuments | dict | str | None


class ImageOptions(StrictModel):
    """How images are taken in (rerank_core.image_intake) and how many pixels the model sees of each (models that
    take images: Qwen3-VL-Reranker)."""

    max_bytes: int = Field(default=20 * 2**20, ge=1, description="an encoded image's bytes, at most")
    max_pixels: int = Field(
        default=8192 * 8192, ge=1, description="width × height as the file's header states it, checked before decoding"
    )
    allow_paths: bool = Field(default=True, description="a string that is not a URL is a local path (off in servers)")
    fetch_urls: bool = Field(default=False, description="fetch http(s) image URLs (only from allowed_hosts if set)")
    allowed_hosts: tuple[str, ...] = Field(default=(), description="hosts URLs may name; empty: any public host")
    allowed_networks: tuple[str, ...] = Field(
        default=(), description="non-public networks URLs may resolve to (e.g. 10.0.0.0/8); none by default"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="seconds to fetch one image URL")
    min_image_pixels: int = Field(default=4 * 32 * 32, ge=32 * 32, description="the model sees at least this many")
    max_image_pixels: int = Field(
        default=1800 * 32 * 32, ge=32 * 32, description="the model sees at most this many (1,800 tokens of 32 × 32)"
    )
    encoder_dtype: Literal["f32", "int8", "bf16"] | None = Field(
        default=None,
        description="the vision encoder's dtype: f32 (features as the recipe's), bf16 (the f32 graph computed in bf16 "
        "on OpenVINO where the CPU multiplies bf16: ~4× f32 on AMX, features ~0.6% off) or int8 (an export's "
        "vision_int8.onnx, features ~3-5% off); unset: f32 beside an f32 or f16 decoder, bf16 beside bf16, and "
        "beside int8 where the CPU multiplies bf16 (docs/models.md, Precisions)",
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> ImageOptions:
        if self.min_image_pixels > self.max_image_pixels:
            raise ValueError(f"min_image_pixels ({self.min_image_pixels}) must be ≤ max_image_pixels")
        return self


class LocalOptions(StrictModel):
    """How the local ONNX backend finds, loads and runs a model: every option of `Reranker.from_pretrained`."""

    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit)")
    path_in_repo: str | None = Field(default=None, description="sub-folder of the Hub repo or folder")
    cache_dir: str | None = Field(default=None, description="Hugging Face cache; None: huggingface_hub's default")
    export_cache_dir: str | None = Field(
        default=None, description="where checkpoints are exported to ONNX once; None: $QWEN_RERANK_CACHE or ~/.cache"
    )
    dtype: Dtype | None = Field(default=None, description="None: the graph that suits the device (f32 CPU, f16 GPU)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    graph_variant: Literal["auto", "cpu", "cuda", "fused", "paged"] = Field(
        default="auto",
        description="auto: the folder's causal GPU graph on CUDA, else the CPU graph; cuda (causal), fused (ONNX "
        "Runtime's fused operators) and paged (the same on packed tokens, prompts shared inside a call) load that "
        "GPU graph on any device",
    )
    share_prefix: bool = Field(
        default=True, description="run each query's shared prompt prefix once per call (graphs exported with past K/V)"
    )
    prefix_cache_bytes: int = Field(
        default=PREFIX_CACHE_BYTES,
        ge=0,
        description="K/V of recent queries' shared prefixes kept across calls (with share_prefix); 0: off",
    )
    intra_op_threads: int | None = Field(default=None, ge=1, description="ONNX Runtime threads; None: its default")
    memory_limit_mib: int | None = Field(
        default=None,
        ge=1,
        description="cap on ONNX Runtime's memory arena for a model call (CUDA: gpu_mem_limit, e.g. per replica "
        "sharing a GPU; CPU: one arena per process); a call that does not fit is split; None: no cap",
    )
    max_length: int | None = Field(default=None, ge=64, description="tokens per pair; None: the model's (8192)")
    token_budget: int | None = Field(
        default=None, ge=1, description=f"rows × longest per model call; None: {TOKEN_BUDGET} by device"
    )
    max_rows_per_call: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices("max_rows_per_call", "max_batch_size"),  # its name before 0.2
        description=f"rows per model call, at most; None: {MAX_ROWS_PER_CALL} by device",
    )
    instruction: str | None = Field(default=None, description="default instruction; None: the official one")
    long_documents: LongDocuments = Field(
        default_factory=LongDocuments, description="documents over the window: truncate, or chunk into windows"
    )
    images: ImageOptions = Field(default_factory=ImageOptions, description="image intake limits and pixel budget")

    @field_validator("dtype", mode="before")
    @classmethod
    def _any_dtype_spelling(cls, value: Any) -> Dtype | None:
        return None if value is None else Dtype.parse(value)  # 'F32', 'fp16', Dtype.INT8, …

    @classmethod
    def from_kwargs(cls, **options: Any) -> LocalOptions:
        """Validate keyword options (as `from_pretrained` takes them); a typo fails naming the key."""
        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(f"options: {describe_errors(exc)}") from None


class RemoteOptions(StrictModel):
    """How the DashScope backend reaches the service; the key itself never lives in a config file."""

    api_key_env: str = "DASHSCOPE_API_KEY"
    base_url: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0)


class ModelConfig(LocalOptions, RemoteOptions):
    """Which reranker to load and how: a local Qwen3 model (folder, builtin:NAME, Hub id) or the DashScope service."""

    backend: Literal["onnx", "dashscope"] = "onnx"
    model: str = Field(min_length=1, description="folder, builtin:NAME, Hub repo id, or DashScope model name")
