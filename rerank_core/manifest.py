"""The manifest an export folder carries: which graph per dtype, yes/no/pad ids, template, provenance."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .formatting import PREFIX, SUFFIX
from .tokenization import DEFAULT_MAX_LENGTH

MANIFEST_NAME = "rerank_manifest.json"
FORMAT = "qwen-rerank/1"


class Manifest(BaseModel):
    """What the loader needs to score with an exported graph, and where it came from."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    graphs: dict[str, str]  # dtype name → graph file in the folder
    # dtype name → GPU graph: inputs input_ids (right-padded) and last_index, fused causal Attention (opset 23)
    cuda_graphs: dict[str, str] = {}
    # True: the graphs take past_key_i/past_value_i of a shared prefix (right padding, last_index) and return the
    # new tokens' key_i/value_i; False: input_ids and attention_mask (left padding), as exporter versions ≤ 2 wrote
    past_kv: bool = False
    output: str = "logit"
    yes_id: int
    no_id: int
    pad_id: int
    prefix: str = PREFIX
    suffix: str = SUFFIX
    max_length: int = DEFAULT_MAX_LENGTH
    source: str
    revision: str | None = None
    exporter: str | None = None  # EXPORTER_VERSION of the export that wrote it (None: written before version 4)

    def write(self, folder: Path) -> None:
        """Write the manifest into `folder`."""
        (folder / MANIFEST_NAME).write_text(json.dumps(self.model_dump(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The manifest of `folder`, or None for a folder without one (a third-party export)."""
        path = folder / MANIFEST_NAME
        return cls.model_validate_json(path.read_text()) if path.is_file() else None
