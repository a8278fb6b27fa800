"""Qwen3's graph layouts, one adapter each: its padding, its inputs, and how it runs a batch (continuing a shared
prefix or not).

- `past_kv` (our CPU graphs): right-padded ids, `last_index`, the past K/V of a prefix every row continues → `logit`
  and the new tokens' K/V. The only layout that shares prefixes.
- `causal` (our GPU graphs): right-padded ids and `last_index` → `logit`; fused causal attention, no mask, no K/V.
- `fused` (our GPU graphs on ONNX Runtime's fused operators): what `causal` takes and returns (heads.py).
- `paged` (`fused` without padding): packed tokens, per-sequence lengths, a block table and a scratch K/V cache →
  `logit`; rows of a call that start alike share those tokens inside the call (packing.py).
- `plain` (exports made with --no-past-kv, exporter ≤ 2): left-padded ids and `attention_mask` → `logit`.
- `full_logits` (third-party exports): left-padded ids, `attention_mask` (and `position_ids`) → `logits` [B, L, V].
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ...errors import ModelFormatError
from ...graph_layout import GraphLayout, Prefix, session_device
from ...planning import Batch
from .packing import FED_INPUTS, pack_call

log = logging.getLogger(__name__)

# ONNX Runtime's input types as numpy dtypes, for the tensors a layout feeds.
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# A full-logits graph materialises [batch, seq, vocab] float32: keep one call's logits under this many bytes.
FULL_LOGITS_BYTES = 1 << 30
# What one more model call costs a GPU graph, in tokens' worth of time: on an H200 (f16 GPU graph, ~300-token pairs)
# calls of 65,536 tokens scored 1.12× the pairs/s of 32-row calls (docs/gpu.md), which a per-call time of 5.3 ms
# and 3.9 µs per token explain. The planner splits a call of mixed lengths where its padding costs more.
GPU_CALL_OVERHEAD_TOKENS = 1_400


class PastKvLayout(GraphLayout):
    """Our CPU graph: a shared prefix's K/V in, each row's logit and the new tokens' K/V out."""

    name, right_padded, takes_prefix = "past_kv", True, True
    required = frozenset({"input_ids", "last_index"})

    def __init__(self, session: ort.InferenceSession, yes_id: int, no_id: int, share_prefix: bool = True):
        past = [i for i in session.get_inputs() if i.name.startswith(("past_key_", "past_value_"))]
        self._past_names = [i.name for i in past]
        super().__init__(session, yes_id, no_id, share_prefix)
        if not past:
            raise ModelFormatError(f"{self.name} graph without past_key_i/past_value_i inputs")
        self._present_names = [name.removeprefix("past_") for name in self._past_names]
        self._key_block = getattr(session, "key_block", 1)  # an ONNX Runtime session needs none
        _, heads, _, head_dim = past[0].shape
        self._empty = Prefix(tuple(np.zeros((1, heads, 0, head_dim), NUMPY_TYPES[past[0].type]) for _ in past), 0)

    def _accepts(self) -> set[str]:
        return set(self._past_names)

    @property
    def empty_prefix(self) -> Prefix:
        return self._empty

    def extend(self, prefix: Prefix, ids: np.ndarray, chunk: int) -> Prefix:
        """The K/V of `prefix` followed by `ids`, computed `chunk` tokens per call (the token budget bounds a call);
        the prefix's ids grow with it where it keeps them."""
        tensors, length, known = list(prefix.tensors), prefix.length, prefix.ids
        for start in range(0, len(ids), max(chunk, 1)):
            part = ids[start : start + chunk]
            width = len(part)
            before = Prefix(tuple(tensors), length, known)
            new = self.session.run(
                self._present_names,
                self._feed(self._whole_blocks(part[None, :], length), np.array([width - 1]), before),
            )
            del before
            for layer, add in enumerate(new):  # one layer at a time: a long row never holds two copies of its K/V
                tensors[layer] = np.concatenate([tensors[layer], add[:, :, :width]], axis=2)
            length += width
            known = None if known is None else np.concatenate([known, part])
        return Prefix(tuple(tensors), length, known)

    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        feed = self._feed(self._whole_blocks(batch.input_ids, prefix.length), batch.last_index, prefix)
        return self.session.run([self.output], feed)[0].astype(np.float32)

    def _whole_blocks(self, input_ids: np.ndarray, past: int) -> np.ndarray:
        """`input_ids` padded on the right until past + new keys fill whole blocks of the session's `key_block`
        (OpenVINO bf16: see BF16_KEY_BLOCK); a causal graph's real tokens never see the added ones."""
        extra = -(past + input_ids.shape[1]) % self._key_block
        return np.pad(input_ids, ((0, 0), (0, extra))) if extra else input_ids

    def _feed(self, input_ids: np.ndarray, last_index: np.ndarray, prefix: Prefix) -> dict:
        return {"input_ids": input_ids, "last_index": last_index, **dict(zip(self._past_names, prefix.tensors))}


class CausalLayout(GraphLayout):
    """Our GPU graph: right padding makes a causal mask exact, so attention is fused and builds no mask."""

    name, right_padded = "causal", True
    required = frozenset({"input_ids", "last_index"})
    call_overhead_tokens = GPU_CALL_OVERHEAD_TOKENS

    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        feed = {"input_ids": batch.input_ids, "last_index": batch.last_index}
        return self.session.run([self.output], feed)[0].astype(np.float32)


class CudaOnlyOperators:
    """A layout whose graphs hold operators only CUDA runs (in f16): elsewhere they run as standard nodes."""

    cuda_only = True

    @classmethod
    def standard_form(cls, graph_file: Path):
        """The graph with GroupQueryAttention's fused q/k norms (or PagedAttention) as standard nodes."""
        from .cuda_only import standard_equivalent  # needs the onnx package, as only this path does

        return standard_equivalent(graph_file)


class FusedLayout(CudaOnlyOperators, CausalLayout):
    """`causal`'s inputs and output, computed by ONNX Runtime's fused operators (GroupQueryAttention and co.)."""

    name = "fused"


def flash_block_tokens(head_dim: int) -> int:
    """Tokens per cache block of a `paged` graph: ONNX Runtime's Flash path reads paged K/V in tiles that must not
    straddle a block, 256 tokens up to head_dim 64, 128 up to 128 (Qwen3), 64 above (paged_attention.cc); other
    block sizes fall back to its memory-efficient kernel."""
    return 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64


class PagedLayout(CudaOnlyOperators, GraphLayout):
    """`fused` on packed tokens: no padding computed, and rows that start alike (a query's documents) continue one
    computation of their shared prompt, in whole blocks of the scratch K/V cache (packing.py)."""

    name, right_padded = "paged", True
    required = frozenset(FED_INPUTS) | {"key_cache", "value_cache"}

    def __init__(
        self,
        session: ort.InferenceSession,
        yes_id: int,
        no_id: int,
        share_prefix: bool = True,
        block_size: int | None = None,
    ):
        super().__init__(session, yes_id, no_id, share_prefix)
        cache = next(i for i in session.get_inputs() if i.name == "key_cache")
        self._cache_type, self._cache_shape = NUMPY_TYPES[cache.type], tuple(cache.shape[2:])
        self.block_size = block_size or flash_block_tokens(self._cache_shape[-1])  # None: what Flash reads
        self._device = session_device(session)
        self._caches: tuple[ort.OrtValue, ort.OrtValue] | None = None
        self._cache_lock = threading.Lock()  # one scratch cache: calls from several threads take turns

    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        rows = [ids[:n] for ids, n in zip(batch.input_ids, batch.last_index + 1)]
        call = pack_call(rows, self.block_size, self.share_prefix)
        binding = self.session.io_binding()
        for name, array in call.feed().items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self.output, "cpu")
        with self._cache_lock:
            for name, cache in zip(("key_cache", "value_cache"), self._scratch(call.num_blocks)):
                binding.bind_ortvalue_input(name, cache)
            self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0].astype(np.float32)

    def _scratch(self, blocks: int) -> tuple[ort.OrtValue, ort.OrtValue]:
        """Key and value caches of at least `blocks` blocks on the session's device, kept between calls (grown when
        a call needs more): written and read inside each call only, never copied to or from the host."""
        if self._caches is None or self._caches[0].shape()[0] < blocks:
            shape = (max(blocks, 2 * self._caches[0].shape()[0] if self._caches else 0), self.block_size)
            self._caches = tuple(
                ort.OrtValue.ortvalue_from_shape_and_type(shape + self._cache_shape, self._cache_type, self._device)
                for _ in range(2)
            )
        return self._caches


class PlainLayout(GraphLayout):
    """A last-token graph with an attention mask: left padding, so every row's last token is the last position."""

    name, right_padded = "plain", False
    required = frozenset({"input_ids", "attention_mask"})
    optional = frozenset({"position_ids"})

    def _feed(self, batch: Batch) -> dict:
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.clip(np.cumsum(batch.attention_mask, axis=1) - 1, 0, None)
        return feed

    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        return self.session.run([self.output], self._feed(batch))[0].astype(np.float32)


class FullLogitsLayout(PlainLayout):
    """The naive graph third parties ship: logits over the whole vocabulary at every position; correct, slower."""

    name, output = "full_logits", "logits"

    def fit_budget(self, token_budget: int) -> int:
        vocab = next(o.shape[-1] for o in self.session.get_outputs() if o.name == self.output)
        vocab = vocab if isinstance(vocab, int) else max(self.yes_id, self.no_id) + 1
        capped = min(token_budget, max(1, FULL_LOGITS_BYTES // (4 * vocab)))
        log.warning(
            "this is a full-logits graph: scores are correct but it computes [batch, seq, vocab] logits, so it is "
            "slower and the token budget is capped at %d; `rerank export` makes a last-token graph",
            capped,
        )
        return capped

    def run(self, batch: Batch, prefix: Prefix) -> np.ndarray:
        (out,) = self.session.run([self.output], self._feed(batch))
        last = out[:, -1, :]
        return (last[:, self.yes_id] - last[:, self.no_id]).astype(np.float32)


LAYOUTS: dict[str, type[GraphLayout]] = {
    layout.name: layout
    for layout in (PastKvLayout, CausalLayout, FusedLayout, PagedLayout, PlainLayout, FullLogitsLayout)
}


def detect_layout(session: ort.InferenceSession) -> str:
    """The layout of a graph that comes without a manifest (a third-party export), told by its signature."""
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if "logits" in outputs:
        return FullLogitsLayout.name
    if any(name.startswith("past_key_") for name in inputs):
        return PastKvLayout.name
    return PlainLayout.name if "attention_mask" in inputs else CausalLayout.name
