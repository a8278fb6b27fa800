"""Scoring with our ONNX graphs (ONNX Runtime; OpenVINO for bf16), any model family: encode → plan → batch → sigmoid."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ...config import (
    MAX_ROWS_PER_CALL,
    PREFILL_CHUNK_TOKENS,
    TOKEN_BUDGET,
    LocalOptions,
    LongDocuments,
    LongDocumentsSetting,
)
from ...content import Content, Image, Pair, validate_pairs
from ...device import resolve_device
from ...dtypes import Dtype
from ...errors import InvalidInputError
from ...families import family_for
from ...graph_layout import GraphLayout, Prefix, session_device
from ...model_files.folder import ModelFolder
from ...planning import Batch, budget_batches, plan_prefix_groups
from ...scorer import Prepared, ScoreOutput, Scorer, Truncation
from ...tokenization import EncodedPairs
from ...windows import aggregate_windows
from .memory import device_memory_errors, is_allocation_failure
from .prefix_cache import PrefixCache
from .session import choose_precision, faster_dtypes, open_companion, open_graph

log = logging.getLogger(__name__)
# A query's shared prompt may span this many token budgets (an image query's is hundreds of tokens: at one CPU budget
# of 256 each of its documents recomputed the rest of it); its K/V is kept once, and the rows continuing it are fewer
# per call as it grows.
PREFIX_BUDGETS = 8


def _say_faster_dtypes(folder: ModelFolder) -> None:
    """One info line when a model loads in f32 by default where a faster dtype could run: which, by how much, how."""
    faster = faster_dtypes({g.dtype for g in folder.graphs if not g.for_gpu})
    if faster:
        choices = "; ".join(f"dtype='{dtype.value}' measured {gain}" for dtype, gain in faster.items())
        log.info("%s: exact f32 (the default); faster here, chosen by name: %s", folder.name, choices)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out."""
    return (0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))).astype(np.float32)


@dataclass(frozen=True)
class Progress:
    """A pair computed ahead (`OnnxScorer.prefill`): the logits of its first rows (windows), and the K/V of the
    first tokens of the next row (None: not started)."""

    done: tuple[float, ...]
    kv: Prefix | None


class OnnxScorer(Scorer):
    """Scores pairs with an ONNX export: a ModelFolder read once, run with LocalOptions; its model family (chosen by
    the folder's config.json) encodes the pairs and adapts the graph's layout.

    Example:
        >>> from rerank_core.tiny_model import tiny_model_dir
        >>> scorer = OnnxScorer.open(tiny_model_dir())
        >>> scorer.score([("what is ML?", "Machine learning is a subset of AI.")]).shape
        (1,)
    """

    def __init__(self, folder: ModelFolder, options: LocalOptions | None = None):
        options = options or LocalOptions()
        device = resolve_device(options.device)
        self.family = family_for(folder.model_type, str(folder.path))
        self.graph = folder.choose_graph(choose_precision(options.dtype, device), device, options.graph_variant)
        self.dtype = self.graph.dtype
        if options.dtype is None and device == "cpu" and self.dtype is Dtype.F32:
            _say_faster_dtypes(folder)
        self.tokenizer = self.family.encoder(folder, options)
        self.takes_images = self.family.takes_images
        self.folder = folder
        self.yes_id, self.no_id = folder.yes_id, folder.no_id
        layout = self.family.layout_class(self.graph.layout) if self.graph.layout else None
        session = open_graph(
            self.graph,
            layout,
            options.device,
            options.intra_op_threads,
            options.export_cache_dir,
            options.memory_limit_mib,
        )
        self.device = session_device(session)
        self.max_rows_per_call = options.max_rows_per_call or MAX_ROWS_PER_CALL[self.device]
        self._budget = options.token_budget or TOKEN_BUDGET[self.device]
        self._options = options
        self._prefix_cache_bytes = options.prefix_cache_bytes
        # A graph beside the scored one (a family's vision encoder) opens with this scorer's device, threads and cap.
        self._open_companion = functools.partial(
            open_companion,
            scored=self.dtype,
            device=options.device,
            intra_op_threads=options.intra_op_threads,
            cache_dir=options.export_cache_dir,
            memory_limit_mib=options.memory_limit_mib,
        )
        self.memory_splits = 0  # calls split because the device's memory refused them whole
        self.replace_session(session)
        self.model_name = folder.name
        self.instruction = options.instruction
        self.long_documents = options.long_documents

    @classmethod
    def open(cls, model_dir: str | os.PathLike, **options) -> OnnxScorer:
        """The scorer of an export folder on disk, with `options` as `LocalOptions` takes them."""
        return cls(ModelFolder.read(model_dir), LocalOptions.from_kwargs(**options))

    @property
    def graph_path(self) -> Path:
        """The graph file this scorer runs."""
        return self.graph.path

    def replace_session(self, session: ort.InferenceSession) -> None:
        """Run on `session`: the same graph opened with other options or another runtime (tuning, profiling)."""
        self.session = session
        self.layout: GraphLayout = self.family.open_layout(
            self.graph, session, self.folder, self._open_companion, self._options
        )
        self.token_budget = self.call_tokens = self.layout.fit_budget(self._budget)
        self.shares_prefix = self._options.share_prefix and self.layout.takes_prefix
        self.chunk_tokens = PREFILL_CHUNK_TOKENS if self.shares_prefix else None
        cached = self.shares_prefix and self._prefix_cache_bytes > 0
        self.prefix_cache = PrefixCache(self._prefix_cache_bytes) if cached else None
        # The system prompt's K/V, computed once per session when sharing prefixes; else every row starts from 0.
        empty = self.layout.empty_prefix
        self._system = (
            self.layout.extend(empty, self.tokenizer.prefix_ids, self.token_budget) if self.shares_prefix else empty
        )

    def prepare(
        self,
        pairs: Sequence[Pair],
        *,
        instruction: str | None = None,
        truncation: Truncation = "right",
        long_documents: LongDocumentsSetting = None,
        max_tokens_per_doc: int | None = None,
    ) -> Prepared:
        """Validate and encode pairs as the model family does (PairEncoder.encode_pairs): a document over the window is
        cut (from the right, or from its start), or with `long_documents` mode `chunk` scored in overlapping windows
        (default: the model's `long_documents`). `max_tokens_per_doc` first cuts each document after that many of its
        own tokens (not counted as truncated: it was asked for)."""
        pairs = self.check_pairs(validate_pairs(pairs))
        if max_tokens_per_doc is not None:
            if max_tokens_per_doc < 1:
                raise InvalidInputError("max_tokens_per_doc", f"must be at least 1, got {max_tokens_per_doc}")
            pairs = self.tokenizer.cut_documents(pairs, max_tokens_per_doc)
        spec = LongDocuments.of(long_documents) or self.long_documents
        instruction = self.instruction if instruction is None else instruction
        encoded = self.tokenizer.encode_pairs(pairs, instruction, spec, truncation)
        lengths = encoded.lengths
        costs = lengths - np.maximum(encoded.head_lengths, self._system.length) if self.shares_prefix else lengths
        per_pair = encoded.per_pair
        return Prepared(pairs, instruction, per_pair(lengths), per_pair(encoded.truncated), encoded, per_pair(costs))

    def check_pairs(self, pairs: list[Pair]) -> list[Pair]:
        """The pairs as the model family takes them (the text family refuses content parts)."""
        return self.family.check_pairs(pairs, self.model_name)

    def precompute(self, prepared: Prepared) -> None:
        """The layout's work ahead for the request's media (Qwen3-VL: each image's vision features, one at a time)."""
        if prepared.payload is not None and prepared.payload.media:
            with device_memory_errors():
                self.layout.encode_ahead(prepared.payload.media)

    def with_pending_work(self, prepared: Prepared) -> Prepared:
        """`prepared` with each image its calls will encode (its features not kept) charged to the first pair that
        names it, in tokens' worth of vision work (the layout's `media_cost`)."""
        encoded: EncodedPairs = prepared.payload
        if encoded is None or not encoded.media:
            return prepared
        starts, seen = encoded.starts, set()
        extra = np.zeros(len(prepared), dtype=np.int64)
        for i in range(len(prepared)):
            media = encoded.media_of(range(int(starts[i]), int(starts[i + 1]))) or {}
            extra[i] = self.layout.media_cost({key: entry for key, entry in media.items() if key not in seen})
            seen.update(media)
        return replace(prepared, costs=prepared.costs + extra) if extra.any() else prepared

    def image_tokens(self, pairs: Sequence[Pair], *, at_most: bool = False) -> int:
        """Tokens of the pairs' images as the family reads them from their headers, each distinct image's once."""
        if not self.takes_images:
            return 0
        tokens: dict[Image, int] = {}
        total = 0
        for i, pair in enumerate(validate_pairs(pairs)):
            for name, side in zip(("query", "document"), pair):
                images = [p for p in side.parts if isinstance(p, Image)] if isinstance(side, Content) else []
                for k, image in enumerate(images):
                    if image not in tokens:
                        where = f"pairs[{i}].{name}.image[{k}]"
                        tokens[image] = self.tokenizer.image_tokens(image, where, at_most=at_most)
                    total += tokens[image]
        return total

    def cache_keys(self, prepared: Prepared) -> list[bytes]:
        """A pair's rows as the family encodes them (token ids, for text) and the dtype that computes them say all its
        score depends on: template, instruction, query, document after truncation (in chunk mode: every window and
        how they aggregate), precision."""
        encoded: EncodedPairs = prepared.payload
        starts, keys = encoded.starts, []
        for i in range(len(prepared)):
            digest = hashlib.blake2b(self.graph.path.name.encode() + b"\0" + self.dtype.value.encode(), digest_size=16)
            if encoded.row_starts is not None:
                digest.update(encoded.aggregate.encode())
            for row in range(starts[i], starts[i + 1]):
                digest.update(self.tokenizer.row_key(encoded, row))
            keys.append(digest.digest())
        return keys

    def prefill(self, item: Prepared, pair: int, state: Progress | None, tokens: int) -> Progress:
        """`tokens` more of a pair computed ahead, continuing `state` (None: from its shared head): its rows
        (windows) in order, each finished row's logit kept, the next one's K/V grown; the pair's last token is left
        for the call that scores it."""
        with device_memory_errors():
            return self._prefill(item, pair, state, tokens)

    def _prefill(self, item: Prepared, pair: int, state: Progress | None, tokens: int) -> Progress:
        encoded: EncodedPairs = item.payload
        first, end = int(encoded.starts[pair]), int(encoded.starts[pair + 1])
        media = encoded.media_of(range(first, end))  # this pair's images, not its request's
        tokens -= self.layout.media_cost(media)  # images to encode are part of the piece's work (with_pending_work)
        self.layout.take_media(media)
        done, kv = list(state.done) if state else [], state.kv if state else None
        while tokens > 0:
            row = first + len(done)
            ids = encoded.ids[row]
            if kv is None:
                kv = self._prefix(ids[: max(int(encoded.head_lengths[row]), self._system.length)])
            left = len(ids) - kv.length
            if left > tokens or row == end - 1:  # grow this row's K/V (never to the pair's very last token)
                kv = self.layout.extend(kv, ids[kv.length : min(kv.length + tokens, len(ids) - 1)], self.token_budget)
                break
            done.append(self._continue(ids, kv))  # the row fits: score it
            kv, tokens = None, tokens - left
        return Progress(tuple(done), kv)

    def score_prepared(self, items: Sequence[Prepared], *, batch_size: int | None = None) -> list[ScoreOutput]:
        """Score prepared requests in shared token-budget batches of similar length; results in input order."""
        encoded = EncodedPairs.concat([item.payload for item in items])
        offsets = np.cumsum([0] + [len(item.payload.ids) for item in items])
        known, prefilled = {}, {}
        for item, offset in zip(items, offsets):
            for pair, progress in (item.prefilled or {}).items():
                first = int(offset + item.payload.starts[pair])
                known.update((first + k, logit) for k, logit in enumerate(progress.done))
                if progress.kv is not None:
                    prefilled[first + len(progress.done)] = progress.kv
        with device_memory_errors():
            self.layout.take_media(encoded.media)
            logits = self._logits(encoded, batch_size or self.max_rows_per_call, prefilled, known)
        return [self._output(item, logits[a:b]) for item, a, b in zip(items, offsets[:-1], offsets[1:])]

    @staticmethod
    def _output(item: Prepared, logits: np.ndarray) -> ScoreOutput:
        """One request's output from its rows' logits: windows aggregated into one score per pair."""
        encoded: EncodedPairs = item.payload
        windows = None
        if encoded.row_starts is not None:
            logits, best = aggregate_windows(logits, encoded.row_starts, encoded.aggregate)
            windows = encoded.spans[encoded.row_starts[:-1] + best]
        return ScoreOutput(sigmoid(logits), item.tokens, item.truncated, logits, windows)

    def _logits(
        self,
        encoded: EncodedPairs,
        max_rows: int,
        prefilled: dict[int, Prefix] | None = None,
        known: dict[int, float] | None = None,
    ) -> np.ndarray:
        """Each shared prefix runs once, then its rows' remaining tokens in token-budget batches of the adapter; a
        row in `prefilled` continues its own K/V, a row in `known` was scored before.

        Without sharing there is one group, of every row, continuing the empty prefix. The budget counts only the
        tokens computed; a prefix is at most PREFIX_BUDGETS budgets long, computed a budget at a time, and its rows go
        at most `max_rows` × budget ÷ its length a call (the keys a call reads bounded as before). A row longer than
        the budget (on a graph that continues K/V) is computed ahead a budget at a time and scored on its last piece,
        so no call's activations grow past the budget whatever the document's length.
        """
        logits = np.zeros(len(encoded.ids), dtype=np.float32)
        ahead, known = prefilled or {}, known or {}
        skip = np.fromiter([*ahead, *known], np.int64, len(ahead) + len(known))
        todo = np.setdiff1d(np.arange(len(encoded.ids)), skip)
        part = encoded.select(todo) if len(skip) else encoded
        for row, logit in known.items():
            logits[row] = logit
        base = self._system.length
        heads = part.heads if self.shares_prefix else None
        head_lengths = part.head_lengths if self.prefix_cache is not None else None
        max_prefix = max(self.token_budget * PREFIX_BUDGETS, base)
        for group in plan_prefix_groups(part.ids, heads, base, max_prefix, head_lengths):
            prefix = self._prefix(part.ids[group.rows[0]][: group.length])
            whole = []
            for row in todo[group.rows]:
                if len(encoded.ids[row]) - group.length > self.token_budget and self.layout.takes_prefix:
                    logits[row] = self._continue(encoded.ids[row], prefix)  # one long row at a time: its K/V
                else:
                    whole.append(row)
            rows = np.asarray(whole, dtype=np.int64)
            rest = [encoded.ids[r][group.length :] for r in rows]
            group_rows = max(1, min(max_rows, max_rows * self.token_budget // max(group.length, 1)))
            for batch in budget_batches(rest, self.token_budget, group_rows, **self._batching):
                logits[rows[batch.indices]] = self._run_fitting(batch, rest, prefix)
        for row, state in ahead.items():
            logits[row] = self._continue(encoded.ids[row], state)
        return logits

    def _run_fitting(self, batch: Batch, rows: list[np.ndarray], prefix: Prefix) -> np.ndarray:
        """The logits of `batch` (its indices point into `rows`) continuing `prefix`; a call the device's memory
        refuses is split in halves, each run on its own (counted in `memory_splits`), down to a single row."""
        try:
            return self.layout.run(batch, prefix)
        except Exception as exc:
            if len(batch.indices) == 1 or not is_allocation_failure(exc):
                raise
        self.memory_splits += 1
        log.warning("a call of %d rows × %d tokens did not fit the device's memory; split", *batch.input_ids.shape)
        logits = np.empty(len(batch.indices), dtype=np.float32)
        for half in np.array_split(np.arange(len(batch.indices)), 2):
            part = [rows[i] for i in batch.indices[half]]
            for sub in budget_batches(part, self.token_budget, len(part), **self._batching):
                logits[half[sub.indices]] = self._run_fitting(sub, part, prefix)
        return logits

    def _continue(self, ids: np.ndarray, state: Prefix) -> float:
        """The logit of a row whose first `state.length` tokens' K/V are `state`: the rest a budget at a time, the
        last piece (1..budget tokens) scored."""
        last = (len(ids) - state.length - 1) % self.token_budget + 1
        state = self.layout.extend(state, ids[state.length : len(ids) - last], self.token_budget)
        (batch,) = budget_batches([ids[state.length :]], self.token_budget, 1, **self._batching)
        return self.layout.run(batch, state)[0]

    @property
    def _batching(self) -> dict:
        return {
            "pad_id": self.tokenizer.pad_id,
            "right_padding": self.layout.right_padded,
            "call_overhead_tokens": self.layout.call_overhead_tokens,
        }

    def _prefix(self, ids: np.ndarray) -> Prefix:
        """The K/V of `ids` (which start with the system prompt): from the prefix cache, or computed (and kept)."""
        if len(ids) == self._system.length:
            return self._system
        prefix = self.prefix_cache.get(ids) if self.prefix_cache is not None else None
        if prefix is None:
            prefix = self.layout.extend(self._system, ids[self._system.length :], self.token_budget)
            if self.prefix_cache is not None:
                self.prefix_cache.put(ids, prefix)
        return prefix
