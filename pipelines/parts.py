"""Resumable offline execution: the input cut into parts, one output file per part committed by atomic rename."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rerank_core.errors import ConfigError

from .config import OfflineConfig
from .scoring import ERROR, BatchScorer

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Part:
    """Rows [first, first + rows) of one input file; its output is `{name}.parquet`."""

    name: str
    file: str
    first: int
    rows: int


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path for a URI (`s3://…`, `gs://…`) or a local path (made absolute)."""
    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), str(Path(uri).resolve()))


def plan_parts(input_uri: str, rows_per_part: int) -> list[Part]:
    """Cut every input file into parts of at most rows_per_part rows, in a stable order."""
    dataset = pads.dataset(input_uri, format="parquet")
    parts = []
    for f, fragment in enumerate(sorted(dataset.get_fragments(), key=lambda fr: fr.path)):
        total = fragment.metadata.num_rows
        for k, first in enumerate(range(0, total, rows_per_part)):
            parts.append(Part(f"part-{f:05d}-{k:05d}", fragment.path, first, min(rows_per_part, total - first)))
    return parts


def _read_slice(fs: pafs.FileSystem, part: Part) -> pa.Table:
    """Read only the row groups that overlap the part, then cut the part's rows out of them."""
    with fs.open_input_file(part.file) as handle:
        parquet = pq.ParquetFile(handle)
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        wanted = [i for i, (s, n) in enumerate(zip(starts, sizes)) if s < part.first + part.rows and s + n > part.first]
        table = parquet.read_row_groups(wanted)
    return table.slice(part.first - int(starts[wanted[0]]), part.rows)


class PartScorer:
    """Ray Data callable class: scores whole parts and commits each one as a file; one model per actor."""

    def __init__(self, scorer_kwargs: dict, input_uri: str, output: str, batch_size: int):
        self.scorer = BatchScorer(**scorer_kwargs)
        self.in_fs, _ = filesystem(input_uri)
        self.out_fs, self.out_dir = filesystem(output)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        """Score the parts described in `batch`, write each atomically, report rows and failed rows."""
        rows, failed = [], []
        for record in zip(*(batch[k] for k in ("name", "file", "first", "rows"))):
            part = Part(str(record[0]), str(record[1]), int(record[2]), int(record[3]))
            table = _read_slice(self.in_fs, part)
            scored = pa.concat_tables(
                [
                    self.scorer(table.slice(i, self.batch_size))
                    for i in range(0, max(table.num_rows, 1), self.batch_size)
                ]
            )
            final = f"{self.out_dir}/{part.name}.parquet"
            staging = f"{self.out_dir}/.{part.name}.{uuid.uuid4().hex}.tmp"
            with self.out_fs.open_output_stream(staging) as out:
                pq.write_table(scored, out)
            self.out_fs.move(staging, final)  # the commit: a part is done once its file exists
            rows.append(scored.num_rows)
            failed.append(int(pa.compute.sum(scored.column(ERROR).is_valid()).as_py() or 0))
        return {"name": batch["name"], "rows": np.asarray(rows), "failed": np.asarray(failed)}


def prepare_resumable_output(cfg: OfflineConfig, parts: list[Part]) -> set[str]:
    """Write or check the manifest; return the names of the parts already done."""
    fs, out = filesystem(cfg.output)
    manifest_path = f"{out}/{MANIFEST}"
    planned = {"input": cfg.input, "layout": cfg.layout, "parts": [asdict(p) for p in parts]}
    existing = fs.get_file_info(manifest_path)
    if existing.type == pafs.FileType.File and cfg.mode != "overwrite":
        with fs.open_input_stream(manifest_path) as f:
            if json.loads(f.read()) != planned:
                raise ConfigError(
                    f"output: {cfg.output} holds a different job (its manifest differs); use another output"
                )
    else:
        info = fs.get_file_info(out)
        if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(out)):
            if cfg.mode != "overwrite":
                raise ConfigError(f"output: {cfg.output} is not empty and has no manifest; set `mode: overwrite`")
            fs.delete_dir_contents(out)
        fs.create_dir(out, recursive=True)
        with fs.open_output_stream(manifest_path) as f:
            f.write(json.dumps(planned, indent=1).encode())
    files = fs.get_file_info(pafs.FileSelector(out))
    done = {i.base_name[: -len(".parquet")] for i in files if i.base_name.endswith(".parquet")}
    for stale in (i.path for i in files if i.base_name.endswith(".tmp")):
        fs.delete_file(stale)  # left by a killed run
    return done
