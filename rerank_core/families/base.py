"""The seam of a model family: what is specific to one kind of reranker checkpoint, behind one interface.

A family (a package beside this module, chosen by a checkpoint's config.json `model_type`) says which content it takes,
how a pair becomes token rows (template, default instruction, truncation), what a pair's cache key holds, which
graph layouts it has and how each runs, and how the exporter traces its checkpoint. Everything else — planning,
prefix sharing, sessions, dtypes, the score cache, the scheduler, the dialects, the offline job — is shared and never
asks which family it serves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from ..config import LocalOptions, LongDocuments
from ..content import Image, Pair
from ..dtypes import Dtype
from ..errors import ModelFormatError
from ..graph_layout import GraphLayout
from ..model_files.folder import GraphFile, ModelFolder
from ..scorer import Truncation
from ..tokenization import EncodedPairs


class PairEncoder(ABC):
    """Turns a family's pairs into the token rows its graphs score."""

    pad_id: int
    prefix_ids: np.ndarray  # the tokens every row starts with (the system prompt), computed once per session
    fast: bool  # ids from the fast BPE path (rerank_core.fast_bpe)

    @abstractmethod
    def encode_pairs(
        self,
        pairs: list[Pair],
        instruction: str | None,
        long_documents: LongDocuments,
        truncation: Truncation,
    ) -> EncodedPairs:
        """The rows of `pairs` (validated by the family): one per pair, or one per window of a long document; a pair
        over the window is cut from the right, or from its document's start with `truncation` 'left'."""

    @abstractmethod
    def cut_documents(self, pairs: list[Pair], max_tokens: int) -> list[Pair]:
        """The pairs with each document cut after its first `max_tokens` tokens (as the tokenizer splits it alone)."""

    def image_tokens(self, image: Image, where: str, *, at_most: bool = False) -> int:
        """The tokens `image` takes in a prompt, read from its encoded header before anything is decoded; when only
        taking it in tells (a URL, a PIL image), 0, or with `at_most` the most any image can take (what a budget
        must hold for it); 0 where the family takes no images (it refuses them in check_pairs)."""
        return 0

    def row_key(self, encoded: EncodedPairs, row: int) -> bytes:
        """What a row's score depends on beyond the graph and dtype, for the score cache: its token ids."""
        ids = encoded.ids[row]
        return len(ids).to_bytes(8, "little") + ids.tobytes()


class ModelFamily(ABC):
    """One kind of reranker checkpoint: its content, template, truncation, graph layouts and exporter."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.json `model_type` values of its checkpoints
    checkpoint: ClassVar[str]  # what its checkpoints hold, for errors that say what was expected
    default_instruction: ClassVar[str]
    takes_images: ClassVar[bool] = False
    layouts: ClassVar[Mapping[str, type[GraphLayout]]]

    @abstractmethod
    def check_pairs(self, pairs: list[Pair], model: str) -> list[Pair]:
        """Validated pairs as this family scores them; raises InvalidInputError naming a side it cannot take."""

    @abstractmethod
    def encoder(self, folder: ModelFolder, options: LocalOptions) -> PairEncoder:
        """The encoder of an export folder's tokenizer and template, with the options that shape inputs (max_length
        None: the folder's or the family's; image limits)."""

    @abstractmethod
    def detect_layout(self, session: ort.InferenceSession) -> str:
        """The layout of a graph that comes without a manifest (a third-party export), told by its signature."""

    @abstractmethod
    def exporter(self) -> FamilyExporter:
        """What the exporter asks of this family; imports torch (the export extra)."""

    def layout_class(self, name: str) -> type[GraphLayout]:
        """The adapter class of layout `name`."""
        if name not in self.layouts:
            raise ModelFormatError(f"unknown graph layout {name!r}; {self.name} graphs are {sorted(self.layouts)}")
        return self.layouts[name]

    def open_layout(
        self,
        graph: GraphFile,
        session: ort.InferenceSession,
        folder: ModelFolder,
        open_companion: Callable[[Path, Dtype | None, str], ort.InferenceSession],
        options: LocalOptions,
    ) -> GraphLayout:
        """The adapter for `graph`'s layout (None: detected from the graph) over `session`, that graph of `folder`
        opened, as `options` ask (prefix sharing; a family's own, e.g. its encoder's dtype); checks the graph fits it.
        `open_companion(path, dtype, field)` opens another graph of the folder on the scorer's device and threads, in
        `dtype` as option `field` asked (None: a dtype that follows the scored graph's)."""
        layout = self.layout_class(graph.layout or self.detect_layout(session))
        return layout(session, folder.yes_id, folder.no_id, options.share_prefix)


@dataclass(frozen=True)
class Trace:
    """One graph to trace: the module, its sample inputs (in order), their names, the outputs' names, which input axes
    vary, and the ONNX opset."""

    module: Any  # torch.nn.Module
    inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_shapes: dict
    opset: int


class FamilyExporter(ABC):
    """What the exporter (rerank_core.export) asks of a family to turn its Hugging Face checkpoint into graphs."""

    prefix: str  # the template around each pair's content, recorded in the manifest
    suffix: str
    max_length: int  # tokens per pair by default, recorded in the manifest
    gpu_layouts: tuple[str, ...]  # the GPU graph layouts it can write
    # Graphs write_companions writes that an export with int8 also writes in int8 (the linear layers of their
    # blocks: export.quantize.quantize_blocks_int8): f32 file → int8 file.
    int8_companions: ClassVar[dict[str, str]] = {}

    @abstractmethod
    def cpu_layout(self, past_kv: bool) -> str:
        """The layout of its CPU graphs: one that continues a shared prefix's K/V, or (`past_kv` False) a plain
        one where the family has it."""

    @abstractmethod
    def load(self, src_dir: Path, dtype: Dtype) -> Any:
        """The checkpoint's torch model computing in `dtype` (f32 or f16), in eval mode."""

    @abstractmethod
    def answer_ids(self, src_dir: Path) -> tuple[Any, int, int, int]:
        """(the checkpoint's Hugging Face tokenizer, the "yes" id, the "no" id, the pad id)."""

    @abstractmethod
    def trace(self, model: Any, layout: str, yes_id: int, no_id: int) -> Trace:
        """What to trace for one graph of `layout`."""

    @abstractmethod
    def finish(self, layout: str, graph_file: Path) -> None:
        """Touches made to a written graph of `layout` (node names, unused outputs)."""

    @abstractmethod
    def calibrate_int8(self, src_dir: Path) -> Any:
        """Activation statistics the int8 graph is quantized with (rerank_core.export.quantize)."""

    def write_companions(self, src_dir: Path, out_dir: Path) -> None:  # noqa: B027 - most families have none
        """Files beside the graphs this family's scorer reads (a vision encoder, its settings); none by default."""
