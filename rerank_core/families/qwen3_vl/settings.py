"""What a Qwen3-VL export holds beside its decoder graphs: the vision encoder's graph (f32, and int8 where the export
has an int8 decoder), and the settings its scorer reads (the image pad id, the special ids the recipe's cut keeps,
the encoder's shape)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ...dtypes import Dtype
from ...errors import ModelFormatError

VISION_GRAPH, VISION_INT8_GRAPH, SETTINGS = "vision.onnx", "vision_int8.onnx", "qwen3_vl.json"


def vision_graph(folder: Path, dtype: Dtype | None) -> Path:
    """The vision encoder's graph of `dtype` (`images.encoder_dtype`): f32 (which bf16 computes too, and which an
    unset dtype runs), or int8 where the folder has it (exported with int8 by exporter 11 or later)."""
    path = folder / (VISION_INT8_GRAPH if dtype is Dtype.INT8 else VISION_GRAPH)
    if dtype is Dtype.INT8 and not path.is_file():
        raise ModelFormatError(
            f"images.encoder_dtype: int8 needs {VISION_INT8_GRAPH}, which {folder} lacks: export it with "
            "`rerank export … --dtype f32,int8` (or leave encoder_dtype unset)"
        )
    return path


@dataclass(frozen=True)
class VLSettings:
    """The numbers the encoder and the layout need that the manifest does not carry."""

    image_pad_id: int
    special_ids: tuple[int, ...]  # the tokenizer's all_special_ids: never cut (template.truncate)
    num_position_embeddings: int  # the vision encoder's learned position grid (a square)
    deepstack_layers: int  # features added after the first decoder layers
    hidden_size: int  # the decoder's

    def write(self, folder: Path) -> None:
        """Write the settings into an export folder."""
        (folder / SETTINGS).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> VLSettings:
        """The settings of an export folder; a folder without them is not a Qwen3-VL export we wrote."""
        path = folder / SETTINGS
        if not path.is_file() or not (folder / VISION_GRAPH).is_file():
            raise ModelFormatError(f"{folder} lacks {SETTINGS} or {VISION_GRAPH}: re-export it with `rerank export`")
        data = json.loads(path.read_text())
        return cls(**{**data, "special_ids": tuple(data["special_ids"])})
