"""`rerank offline`: read_parquet → map_batches(BatchScorer, one model per actor) → write_parquet, with a summary."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from rerank_core.errors import ConfigError
from rerank_core.integrations.ray import check_gpus, ensure_ray, fit_actor

from .config import OfflineConfig
from .parts import PartScorer, filesystem, plan_parts, prepare_resumable_output
from .quiet import without_actor_argument_notice
from .scoring import ERROR, BatchScorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSummary:
    """What a finished job did."""

    rows: int
    failed_rows: int
    seconds: float
    output: str

    @property
    def rows_per_s(self) -> float:
        """Throughput over the whole job, start-up included."""
        return self.rows / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"scored {self.rows} rows ({self.failed_rows} failed, see the `error` column) in {self.seconds:.1f}s "
            f"= {self.rows_per_s:.1f} rows/s → {self.output}"
        )


def _prepare_output(uri: str, mode: str) -> None:
    """Refuse a non-empty output unless mode is overwrite, in which case clear it."""
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type == pafs.FileType.File:
        raise ConfigError(f"output: {uri} is a file; give a folder")
    if fs.get_file_info(pafs.FileSelector(path, recursive=False)) and mode != "overwrite":
        raise ConfigError(f"output: {uri} is not empty; set `mode: overwrite` to replace it")
    if mode == "overwrite":
        fs.delete_dir_contents(path, missing_dir_ok=True)


def _count(uri: str) -> tuple[int, int]:
    """Rows and failed rows (non-null `error`) of the written output, read from Parquet directly."""
    dataset = pads.dataset(uri, format="parquet")
    rows = dataset.count_rows()
    failed = dataset.count_rows(filter=pc.field(ERROR).is_valid())
    return rows, failed


@dataclass(frozen=True)
class ActorSetup:
    """How the job's model actors are made: their constructor arguments, resources, and how many."""

    scorer_kwargs: dict
    options: dict  # map_batches' compute strategy and per-actor resources
    concurrency: int

    def options_for(self, inputs: int) -> dict:
        """map_batches' options for `inputs` blocks of work: no more actors than blocks (an idle actor holds a
        model, and Ray Data warns of it)."""
        import ray

        return {**self.options, "compute": ray.data.ActorPoolStrategy(size=max(1, min(self.concurrency, inputs)))}


def actor_setup(cfg: OfflineConfig) -> ActorSetup:
    """The actor pool for `cfg` on the connected cluster: unset resources fitted, GPUs checked, threads set."""
    import ray

    compute = cfg.compute
    # One CPU stays free on a node for Ray Data's read and write tasks: actors holding every CPU starve them.
    shape = fit_actor(compute.num_cpus, compute.num_gpus, spare_cpus=1.0)
    concurrency = compute.concurrency or shape.fits
    check_gpus(shape.num_gpus, concurrency, "compute")
    log.info("%d model actors, each %s", concurrency, shape)
    model = cfg.model.model_dump(mode="json")
    if model.get("intra_op_threads") is None and shape.threads:
        model["intra_op_threads"] = shape.threads
    scorer_kwargs = {"model": model, "layout": cfg.layout, "columns": cfg.columns.model_dump(), "top_k": cfg.top_k}
    options = {
        "compute": ray.data.ActorPoolStrategy(size=concurrency),
        "num_cpus": shape.num_cpus,
        "num_gpus": shape.num_gpus or None,
    }
    return ActorSetup(scorer_kwargs, options, concurrency)


def run_job(cfg: OfflineConfig) -> JobSummary:
    """Run the job on Ray (local, or the cluster at RAY_ADDRESS); every input row comes out exactly once."""
    if not cfg.resume:
        _prepare_output(cfg.output, cfg.mode)
    ensure_ray()
    setup = actor_setup(cfg)
    started = time.monotonic()
    rows_in = _run_parts(cfg, setup) if cfg.resume else _run_stream(cfg, setup)
    rows_out, failed = _count(cfg.output)
    if rows_out != rows_in:
        raise RuntimeError(f"row count mismatch: {rows_in} rows in, {rows_out} rows written to {cfg.output}")
    return JobSummary(rows=rows_out, failed_rows=failed, seconds=time.monotonic() - started, output=cfg.output)


def input_size(uri: str) -> tuple[int, int]:
    """Rows and uncompressed bytes of a Parquet input, from its footers (nothing else is read, no Ray job runs)."""
    rows = size = 0
    for fragment in pads.dataset(uri, format="parquet").get_fragments():
        metadata = fragment.metadata
        rows += metadata.num_rows
        size += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return rows, size


@dataclass(frozen=True)
class StreamingPlan:
    """The scored dataset, not run yet; the input's row count; whether a small input was re-blocked; its block bound."""

    scored: Any  # ray.data.Dataset
    rows: int
    reblocked: bool
    max_block_mib: int

    def write(self, output: str) -> None:
        """Run it into Parquet files of about `max_block_mib` at most: a large input's files are its read blocks; a
        re-blocked one's batches (each an output block) are gathered, or every batch of rows would be a file."""
        gather = {"min_bytes_per_file": self.max_block_mib << 20} if self.reblocked else {}
        with without_actor_argument_notice():
            self.scored.write_parquet(output, **gather)


def streaming_plan(cfg: OfflineConfig, setup: ActorSetup) -> StreamingPlan:
    """read_parquet (blocks ≤ max_block_mib) → map_batches(BatchScorer), with the input's row count.

    Nothing all-to-all stands between reading and scoring, so scoring starts while reading goes on and the object
    store holds a bounded window of small blocks whatever the input's size. An input too small to make
    concurrency × blocks_per_actor blocks of its own (e.g. one small file, one block when read) is re-blocked by
    a streaming repartition so that it still reaches every actor; a large one is not, as the read's own blocks
    spread it, and re-blocking 300 MiB through a streaming repartition took twice the time and spilled 222 MiB.
    """
    import ray

    compute = cfg.compute
    dataset = ray.data.read_parquet(cfg.input)
    dataset.context.target_max_block_size = compute.max_block_mib << 20
    rows_in, size = input_size(cfg.input)
    wanted_blocks = setup.concurrency * compute.blocks_per_actor
    log.info("%d input rows (%.1f MiB) from %s", rows_in, size / 2**20, cfg.input)
    reblocked = size < wanted_blocks * (compute.max_block_mib << 20)
    if reblocked:
        rows_per_block = max(1, min(compute.batch_size, math.ceil(rows_in / wanted_blocks)))
        dataset = dataset.repartition(target_num_rows_per_block=rows_per_block)
    scored = dataset.map_batches(
        BatchScorer,
        fn_constructor_kwargs=setup.scorer_kwargs,
        batch_format="pyarrow",
        batch_size=compute.batch_size,
        **setup.options_for(rows_in),
    )
    return StreamingPlan(scored, rows_in, reblocked, compute.max_block_mib)


def _run_stream(cfg: OfflineConfig, setup: ActorSetup) -> int:
    """The streaming plan written to Parquet; returns the input row count."""
    plan = streaming_plan(cfg, setup)
    plan.write(cfg.output)
    return plan.rows


def _run_parts(cfg: OfflineConfig, setup: ActorSetup) -> int:
    """Resumable: score the parts not yet committed, one output file each; returns the input row count."""
    import ray

    parts = plan_parts(cfg.input, cfg.compute.rows_per_part)
    done = prepare_resumable_output(cfg, parts)
    todo = [p for p in parts if p.name not in done]
    log.info("%d parts planned, %d already done, %d to score", len(parts), len(parts) - len(todo), len(todo))
    if todo:
        items = [{"name": p.name, "file": p.file, "first": p.first, "rows": p.rows} for p in todo]
        scored = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            PartScorer,
            fn_constructor_kwargs={
                "scorer_kwargs": setup.scorer_kwargs,
                "input_uri": cfg.input,
                "output": cfg.output,
                "batch_size": cfg.compute.batch_size,
            },
            batch_size=1,
            **setup.options_for(len(items)),
        )
        with without_actor_argument_notice():
            scored.materialize()
    return sum(p.rows for p in parts)


def load_config(
    path: str | None, *, model: str | None = None, input_path: str | None = None, output_path: str | None = None
) -> OfflineConfig:
    """Load an offline config file (None: defaults, fitted to the cluster) and apply command-line overrides."""
    if path is None:
        missing = [
            flag
            for flag, value in (("--model", model), ("--input", input_path), ("--output", output_path))
            if not value
        ]
        if missing:
            raise ConfigError(f"rerank offline without --config needs {', '.join(missing)}")
        data: dict = {"model": {}}
    else:
        data = OfflineConfig.from_yaml(path).model_dump(mode="json")
    if model:
        data["model"]["model"] = model
    if input_path:
        data["input"] = input_path
    if output_path:
        data["output"] = output_path
    return OfflineConfig.from_dict(data, source=path or "command line")


def run_from_cli(config_path: str | None, model: str | None, input_path: str | None, output_path: str | None) -> int:
    """Entry of `rerank offline`: run, print the summary and a few output rows."""
    cfg = load_config(config_path, model=model, input_path=input_path, output_path=output_path)
    summary = run_job(cfg)
    print(summary)
    print(preview(cfg.output))
    return 0


def preview(uri: str, rows: int = 5, width: int = 40) -> str:
    """The first rows of the output as a small text table."""
    table = pads.dataset(uri, format="parquet").head(rows)
    lines = [" | ".join(table.column_names)]
    for record in table.to_pylist():
        lines.append(" | ".join(str(v)[:width] for v in record.values()))
    return "\n".join(lines)
