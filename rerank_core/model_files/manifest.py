"""The manifest an export folder carries: each graph's file, dtype and layout, the yes/no/pad ids, template, provenance.

Format `qwen-rerank/2` names every graph's layout (see `backends/onnx/layouts.py`). Folders written by exporter
versions before 6 carry `qwen-rerank/1` (graphs per dtype, a `past_kv` flag, GPU graphs apart); `Manifest.read`
reads both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import describe_errors
from ..dtypes import Dtype
from ..errors import ModelFormatError

MANIFEST_NAME = "rerank_manifest.json"
FORMAT = "qwen-rerank/2"
LEGACY_FORMAT = "qwen-rerank/1"
# The graph layouts: how a graph wants its rows padded, what it takes, what it returns (one adapter each).
Layout = Literal["past_kv", "causal", "fused", "paged", "plain", "full_logits", "mrope_past_kv"]


class GraphEntry(BaseModel):
    """One graph of the folder: its file, its dtype and its layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    dtype: Dtype
    layout: Layout
    weight_bits: int | None = None  # int8 graphs since 0.5: 8 (exact on VNNI/AMX CPUs) or 7 (safe on any CPU)


class Manifest(BaseModel):
    """What the loader needs to score with an exported graph, and where it came from."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    graphs: list[GraphEntry]
    yes_id: int
    no_id: int
    pad_id: int
    # The template around each pair's content and the tokens per pair; None: the model family's.
    prefix: str | None = None
    suffix: str | None = None
    max_length: int | None = None
    source: str
    revision: str | None = None
    exporter: str | None = None  # EXPORTER_VERSION of the export that wrote it (None: written before version 4)

    def write(self, folder: Path) -> None:
        """Write the manifest into `folder`."""
        (folder / MANIFEST_NAME).write_text(
            json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        )

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The manifest of `folder` (either format), or None for a folder without one (a third-party export)."""
        path = folder / MANIFEST_NAME
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        if data.get("format") == LEGACY_FORMAT:
            data = _from_legacy(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ModelFormatError(f"{path}: not a manifest this version reads: {describe_errors(exc)}") from None


def _from_legacy(data: dict) -> dict:
    """A `qwen-rerank/1` manifest in today's terms: CPU graphs are past-K/V (or plain, left padded, before exporter
    version 3 and with --no-past-kv); `cuda_graphs` are causal GPU graphs."""
    data = dict(data, format=FORMAT)
    cpu_layout = "past_kv" if data.pop("past_kv", False) else "plain"
    data.pop("output", None)  # always "logit" in this format
    graphs = [{"file": f, "dtype": d, "layout": cpu_layout} for d, f in data.pop("graphs", {}).items()]
    graphs += [{"file": f, "dtype": d, "layout": "causal"} for d, f in data.pop("cuda_graphs", {}).items()]
    data["graphs"] = graphs
    return data
