"""Qwen3-VL-Reranker (2B, 8B): text and images in Qwen3-VL's chat template as its official recipe prompts and cuts
them (template.py), images taken in safely and resized as the recipe does (media.py, pixels.py), a vision encoder
graph and a past-K/V decoder graph with 3-D positions and DeepStack (export.py, layout.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from ...config import LocalOptions
from ...content import Pair
from ...dtypes import Dtype
from ...graph_layout import GraphLayout
from ...image_intake import ImagePolicy
from ...model_files.folder import GraphFile, ModelFolder
from ..base import FamilyExporter, ModelFamily
from .costs import VisionCost
from .encoder import VLPairEncoder
from .layout import MropePastKvLayout
from .pixels import PixelBudget
from .settings import VLSettings, vision_graph
from .template import DEFAULT_INSTRUCTION, MAX_LENGTH


class Qwen3VLFamily(ModelFamily):
    """The multimodal family: Qwen3VLForConditionalGeneration checkpoints (`model_type` qwen3_vl)."""

    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    checkpoint = (
        "a Qwen3-VL checkpoint (config.json with model_type 'qwen3_vl', *.safetensors, tokenizer files, like "
        "Qwen/Qwen3-VL-Reranker-2B)"
    )
    default_instruction = DEFAULT_INSTRUCTION
    takes_images = True
    layouts = {MropePastKvLayout.name: MropePastKvLayout}

    def check_pairs(self, pairs: list[Pair], model: str) -> list[Pair]:
        return pairs  # text and images; each side's parts are checked as they are encoded

    def encoder(self, folder: ModelFolder, options: LocalOptions) -> VLPairEncoder:
        images = options.images
        policy = ImagePolicy.of(images)
        budget = PixelBudget(images.min_image_pixels, images.max_image_pixels)
        max_length = options.max_length or folder.max_length or MAX_LENGTH
        return VLPairEncoder(folder.tokenizer, VLSettings.read(folder.path), folder.pad_id, max_length, policy, budget)

    def detect_layout(self, session: ort.InferenceSession) -> str:
        return MropePastKvLayout.name  # only our exports exist

    def open_layout(
        self,
        graph: GraphFile,
        session: ort.InferenceSession,
        folder: ModelFolder,
        open_companion: Callable[[Path, Dtype | None, str], ort.InferenceSession],
        options: LocalOptions,
    ) -> GraphLayout:
        layout = self.layout_class(graph.layout or self.detect_layout(session))
        encoder = Dtype(options.images.encoder_dtype) if options.images.encoder_dtype else None
        return layout(
            session,
            folder.yes_id,
            folder.no_id,
            options.share_prefix,
            VLSettings.read(folder.path),
            open_companion(vision_graph(folder.path, encoder), encoder, "images.encoder_dtype"),
            VisionCost.of_folder(folder.path),
        )

    def exporter(self) -> FamilyExporter:
        from .export import Qwen3VLExporter  # torch: the export extra

        return Qwen3VLExporter()


QWEN3_VL = Qwen3VLFamily()

__all__ = ["QWEN3_VL", "Qwen3VLFamily"]
