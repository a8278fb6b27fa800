"""Validated configuration shared by the CLI, the Serve app and the offline job; YAML in, typed models out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .dtypes import Dtype
from .errors import ConfigError

T = TypeVar("T", bound="StrictModel")


def _describe(exc: ValidationError) -> str:
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
            raise ConfigError(f"{source}: {_describe(exc)}") from None

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


class ModelConfig(StrictModel):
    """Which reranker to load and how: a local ONNX Qwen3 export, or the DashScope service."""

    backend: Literal["onnx", "dashscope"] = "onnx"
    model: str = Field(min_length=1, description="folder, builtin:NAME, Hub repo id, or DashScope model name")
    revision: str | None = None
    path_in_repo: str | None = None
    dtype: Dtype | None = Field(default=None, description="None: the graph that suits the device (f32 CPU, f16 GPU)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    graph_variant: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: the folder's GPU graph on CUDA, else the CPU graph; cuda also runs on CPU"
    )
    share_prefix: bool = Field(
        default=True, description="run each query's shared prompt prefix once per call (graphs exported with past K/V)"
    )
    intra_op_threads: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=64)
    token_budget: int | None = Field(default=None, ge=1, description="rows × longest per call; None: 256 CPU, 16384 GPU")
    max_batch_size: int = Field(default=32, ge=1)
    instruction: str | None = None
    export_cache_dir: str | None = Field(
        default=None, description="where checkpoints are exported to ONNX once; None: $QWEN_RERANK_CACHE or ~/.cache"
    )
    # DashScope backend only; the key itself never lives in a config file.
    api_key_env: str = "DASHSCOPE_API_KEY"
    base_url: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=3, ge=0)


def load_reranker(cfg: ModelConfig):
    """Build the Reranker a ModelConfig describes."""
    from .api import Reranker

    if cfg.backend == "dashscope":
        import os

        return Reranker.from_dashscope(
            model=cfg.model,
            api_key=os.environ.get(cfg.api_key_env),
            base_url=cfg.base_url,
            instruction=cfg.instruction,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
        )
    return Reranker.from_pretrained(
        cfg.model,
        revision=cfg.revision,
        dtype=cfg.dtype,
        path_in_repo=cfg.path_in_repo,
        export_cache_dir=cfg.export_cache_dir,
        device=cfg.device,
        graph_variant=cfg.graph_variant,
        share_prefix=cfg.share_prefix,
        intra_op_threads=cfg.intra_op_threads,
        max_length=cfg.max_length,
        token_budget=cfg.token_budget,
        max_batch_size=cfg.max_batch_size,
        instruction=cfg.instruction,
    )


class BatchConfig(StrictModel):
    """Cross-request batching of the Serve deployment; live-updatable through Serve's `user_config`."""

    max_batch_size: int = Field(default=16, ge=1, description="requests merged into one model call")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, le=10)


class ServeAppConfig(StrictModel):
    """`args` of the Serve application (`serve.app:build_app`)."""

    model: ModelConfig
    max_documents: int = Field(default=1000, ge=1, description="documents per request")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="enforced while the body arrives")
    max_tokens_per_request: int | None = Field(
        default=None, ge=1, description="tokens of all pairs after truncation; None: 32768 on CPU, 262144 on GPU"
    )
    api_key_env: str | None = Field(default=None, description="env var holding the Bearer key; unset = no auth")
    batch: BatchConfig = BatchConfig()


class ColumnsConfig(StrictModel):
    """Column names of the input table."""

    query: str = "query"
    document: str = "document"  # layout: pairs
    documents: str = "documents"  # layout: grouped (a list column)
    instruction: str | None = None  # optional per-row instruction column


class ComputeConfig(StrictModel):
    """The actor pool: how many model copies, what each one reserves, rows per batch handed to an actor."""

    concurrency: int | None = Field(default=None, ge=1, description="model actors (one model each); None: as many as fit")
    num_cpus: float | None = Field(default=None, gt=0, description="CPUs reserved per actor; None: fitted to the nodes")
    num_gpus: float | None = Field(
        default=None, ge=0, description="GPUs per actor (0.5: two per GPU); None: 0.5 where the cluster has GPUs, else 0"
    )
    batch_size: int = Field(default=256, ge=1, description="rows per map_batches call")
    blocks_per_actor: int = Field(
        default=4, ge=1, description="a small input is re-blocked (streaming) into at least concurrency × this many blocks"
    )
    max_block_mib: int = Field(
        default=16, ge=1, description="largest block read into the object store (MiB): bounds the in-flight window"
    )
    rows_per_part: int = Field(default=50_000, ge=1, description="resume: true: rows per output file (unit of restart)")


class OfflineConfig(StrictModel):
    """An offline scoring job: Parquet in, every row scored (or flagged), Parquet out."""

    model: ModelConfig
    input: str = Field(min_length=1, description="Parquet file or folder, local path or pyarrow filesystem URI")
    output: str = Field(min_length=1, description="output folder")
    layout: Literal["pairs", "grouped"] = "pairs"
    columns: ColumnsConfig = ColumnsConfig()
    top_k: int | None = Field(default=None, ge=1, description="grouped layout: keep the k best in `ranking`")
    mode: Literal["error", "overwrite"] = "error"
    resume: bool = Field(default=False, description="one output file per input part + a manifest; a rerun skips done parts")
    compute: ComputeConfig = ComputeConfig()
