"""The offline job's config: Parquet in and out, the layout and columns, and the actor pool."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rerank_core.config import ModelConfig, StrictModel


class ColumnsConfig(StrictModel):
    """Column names of the input table."""

    query: str = "query"
    document: str = "document"  # layout: pairs
    documents: str = "documents"  # layout: grouped (a list column)
    instruction: str | None = None  # optional per-row instruction column
    # Models that read images, layout pairs: a binary column of encoded images or a string column of paths/URIs;
    # a row's text column, where it has a value, joins its image. Layout grouped: documents items may be structs
    # with `text` and `image` fields.
    query_image: str | None = None
    document_image: str | None = None


class ComputeConfig(StrictModel):
    """The actor pool: how many model copies, what each one reserves, rows per batch handed to an actor."""

    concurrency: int | None = Field(
        default=None, ge=1, description="model actors (one model each); None: as many as fit"
    )
    num_cpus: float | None = Field(default=None, gt=0, description="CPUs reserved per actor; None: fitted to the nodes")
    num_gpus: float | None = Field(
        default=None,
        ge=0,
        description="GPUs per actor (0.5: two per GPU); None: 0.5 where the cluster has GPUs, else 0",
    )
    batch_size: int = Field(default=256, ge=1, description="rows per map_batches call")
    blocks_per_actor: int = Field(
        default=4,
        ge=1,
        description="a small input is re-blocked (streaming) into at least concurrency × this many blocks",
    )
    max_block_mib: int = Field(
        default=16,
        ge=1,
        description="largest block read into the object store (MiB): bounds the in-flight window; output files are "
        "about this size (a small input's batches gathered)",
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
    resume: bool = Field(
        default=False, description="one output file per input part + a manifest; a rerun skips done parts"
    )
    compute: ComputeConfig = ComputeConfig()
