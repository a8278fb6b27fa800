"""Qwen3-Reranker (0.6B, 4B, 8B): text pairs in Qwen3's chat template, content-only truncation, one-logit graphs."""

from __future__ import annotations

import onnxruntime as ort

from ...config import LocalOptions
from ...content import Pair, text_only
from ...model_files.folder import ModelFolder
from ..base import FamilyExporter, ModelFamily
from .encoder import DEFAULT_MAX_LENGTH, PairTokenizer
from .layouts import LAYOUTS, detect_layout
from .template import DEFAULT_INSTRUCTION, PREFIX, SUFFIX


class Qwen3Family(ModelFamily):
    """The text family: Qwen3ForCausalLM checkpoints (`model_type` qwen3) scored by their yes/no logits."""

    name = "qwen3"
    model_types = ("qwen3",)
    checkpoint = (
        "a Qwen3 checkpoint (config.json with model_type 'qwen3', *.safetensors and tokenizer files, like "
        "Qwen/Qwen3-Reranker-0.6B)"
    )
    default_instruction = DEFAULT_INSTRUCTION
    layouts = LAYOUTS

    def check_pairs(self, pairs: list[Pair], model: str) -> list[Pair]:
        text_only(pairs, model)
        return pairs

    def encoder(self, folder: ModelFolder, options: LocalOptions) -> PairTokenizer:
        return PairTokenizer(
            folder.tokenizer,
            pad_id=folder.pad_id,
            prefix=PREFIX if folder.prefix is None else folder.prefix,
            suffix=SUFFIX if folder.suffix is None else folder.suffix,
            max_length=options.max_length or folder.max_length or DEFAULT_MAX_LENGTH,
        )

    def detect_layout(self, session: ort.InferenceSession) -> str:
        return detect_layout(session)

    def exporter(self) -> FamilyExporter:
        from .export import Qwen3Exporter  # torch: the export extra

        return Qwen3Exporter()


QWEN3 = Qwen3Family()

__all__ = ["QWEN3", "Qwen3Family"]
