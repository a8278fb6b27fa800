"""What the ONNX engine asks of a graph layout (a family's adapter): its padding, its prefix, how it runs a batch.

A model family (rerank_core/families/) writes one adapter per layout of its graphs; the engine
(rerank_core/backends/onnx/) plans calls and runs them through this interface only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import onnxruntime as ort

from .errors import ModelFormatError
from .planning import Batch

if TYPE_CHECKING:  # onnx is the export extra; only layouts with CUDA-only operators need it
    import onnx


@dataclass(frozen=True)
class Prefix:
    """Keys and values of the tokens every row of a call continues: per layer [1, kv_heads, length, head_dim], in the
    graph's input order; no tensors for layouts that take none (length 0)."""

    tensors: tuple[np.ndarray, ...]
    length: int
    # Its token ids, for layouts whose positions depend on the content before (mRoPE); None: not kept.
    ids: np.ndarray | None = None


NO_PREFIX = Prefix((), 0)


def session_device(session: ort.InferenceSession) -> str:
    """'cuda' when the session runs on the CUDA provider, else 'cpu'."""
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"


class GraphLayout(ABC):
    """Runs one graph layout on an ONNX Runtime session; subclasses say how."""

    name: ClassVar[str]
    right_padded: ClassVar[bool]
    takes_prefix: ClassVar[bool] = False  # rows continue the K/V of a shared prefix
    output: ClassVar[str] = "logit"
    required: ClassVar[frozenset[str]]
    optional: ClassVar[frozenset[str]] = frozenset()
    call_overhead_tokens: ClassVar[int | None] = None  # None: each call as full as it may be (planning.py)
    # Operators only ONNX Runtime's CUDA provider runs (in f16): elsewhere the graph runs as `standard_form` writes it.
    cuda_only: ClassVar[bool] = False

    def __init__(self, session: ort.InferenceSession, yes_id: int, no_id: int, share_prefix: bool = True):
        self.session, self.yes_id, self.no_id, self.share_prefix = session, yes_id, no_id, share_prefix
        self.inputs = [i.name for i in session.get_inputs()]
        outputs = {o.name for o in session.get_outputs()}
        missing, unknown = self.required - set(self.inputs), set(self.inputs) - self.required - self._accepts()
        if missing or unknown or self.output not in outputs:
            raise ModelFormatError(
                f"{self.name} graph: inputs {sorted(self.inputs)} and outputs {sorted(outputs)}; this layout takes "
                f"{sorted(self.required | self.optional)} and returns {self.output!r} (re-export with: rerank export)"
            )

    def _accepts(self) -> set[str]:
        return set(self.optional)

    @classmethod
    def standard_form(cls, graph_file) -> onnx.ModelProto | None:
        """The graph at `graph_file` with its CUDA-only operators as standard ones (None: it has none)."""
        return None

    @property
    def empty_prefix(self) -> Prefix:
        """The prefix of length 0 that rows continue when nothing is shared."""
        return NO_PREFIX

    def extend(self, prefix: Prefix, ids: np.ndarray, chunk: int) -> Prefix:
        """The prefix `prefix` followed by token ids `ids`; only layouts that take a prefix can grow one."""
        if len(ids):
            raise NotImplementedError(f"a {self.name} graph does not continue a shared prefix")
        return prefix

    def take_media(self, media: Mapping[int, object] | None) -> None:  # noqa: B027 - text layouts take none
        """What the non-text tokens of the rows about to run stand for (EncodedPairs.media: images, by the id their
        tokens carry); the graphs of text families take none."""

    def media_cost(self, media: Mapping[int, object] | None) -> int:
        """Tokens' worth of the work `media` still needs before its rows run, beside their tokens (a vision encoder's
        on images whose features are not kept): 0 for text layouts."""
        return 0

    def encode_ahead(self, media: Mapping[int, object] | None) -> None:  # noqa: B027 - text layouts take none
        """Compute now, outside any model call, what `media` needs before its rows run (a vision encoder's features),
        where it can be kept until then; may be called from another thread than the calls'."""

    def fit_budget(self, token_budget: int) -> int:
        """The token budget this graph can run under (a layout may need less than asked)."""
        return token_budget

    @abstractmethod
    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        """l_yes − l_no (float32) of each row of `batch`, continuing `prefix`."""
