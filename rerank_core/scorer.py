"""The Scorer interface every backend implements, input validation, and ranking on top of scores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .config import LongDocuments, LongDocumentsSetting
from .content import Pair, digest, estimate_tokens, text_only, validate_pairs
from .errors import InvalidInputError

Truncation = Literal["right", "left"]


@dataclass(frozen=True)
class ScoreOutput:
    """Scores in input order, their logits, and what each pair cost: tokens seen and content tokens cut."""

    scores: np.ndarray  # float32, 0..1
    tokens: np.ndarray  # int64 per pair
    truncated: np.ndarray  # int64 per pair; 0 where nothing was cut
    logits: np.ndarray | None = None  # float32 l_yes − l_no, the raw score; derived from scores if not given
    windows: np.ndarray | None = None  # [pairs, 2] character span of the window that gave the score (chunk mode)

    def __post_init__(self):
        if self.logits is None:
            clipped = np.clip(self.scores.astype(np.float64), 1e-7, 1 - 1e-7)
            object.__setattr__(self, "logits", np.log(clipped / (1 - clipped)).astype(np.float32))

    @property
    def total_tokens(self) -> int:
        """Tokens of all pairs together (what `usage.total_tokens` reports)."""
        return int(self.tokens.sum())

    def part(self, start: int, end: int) -> ScoreOutput:
        """The pairs [start, end) of this output."""
        windows = None if self.windows is None else self.windows[start:end]
        return ScoreOutput(
            self.scores[start:end], self.tokens[start:end], self.truncated[start:end], self.logits[start:end], windows
        )


@dataclass(frozen=True)
class Prepared:
    """One request's pairs, validated and (for local models) tokenized: ready to share model calls with others."""

    pairs: list[Pair]
    instruction: str | None
    tokens: np.ndarray  # int64 per pair: what the model sees (an estimate for remote services)
    truncated: np.ndarray  # int64 per pair: content tokens that will be cut
    payload: Any = None  # the backend's own encoding (token ids for local models)
    costs: np.ndarray | None = None  # int64 per pair: tokens computed when scored beside its request's others
    # Pair → the backend's state of its first tokens computed ahead (Scorer.prefill): scoring continues from there.
    prefilled: dict[int, Any] | None = None

    def __post_init__(self):
        if self.costs is None:
            object.__setattr__(self, "costs", self.tokens)

    def __len__(self) -> int:
        return len(self.pairs)

    def select(self, rows: Sequence[int]) -> Prepared:
        """The pairs at positions `rows`, in that order: part of a request to score in one model call."""
        index = np.asarray(rows, dtype=np.int64)
        payload = self.payload.select(rows) if self.payload is not None else None
        pairs = [self.pairs[r] for r in rows]
        return Prepared(pairs, self.instruction, self.tokens[index], self.truncated[index], payload, self.costs[index])

    @property
    def total_tokens(self) -> int:
        """Tokens of all pairs together after truncation: the request's work."""
        return int(self.tokens.sum())


class Scorer(ABC):
    """Scores (query, document) pairs; stateless per call, results in input order.

    `prepare` validates and tokenizes one request (cheap); `score_prepared` runs any number of prepared requests
    through shared model calls (what Serve's batcher and the offline job do); `score` does both for one call.
    """

    model_name: str = "unknown"
    device: str = "remote"
    instruction: str | None = None
    # Tokens (Prepared.costs) one model call should hold, for a scheduler cutting requests across calls; None: a
    # remote service, where one call may take every pending pair.
    call_tokens: int | None = None
    # The smallest piece of a pair a call computes ahead (`prefill`), so a long pair need not fill one long call;
    # None: pairs are scored whole.
    chunk_tokens: int | None = None
    takes_images: bool = False  # pairs may hold Image parts (a multimodal model)

    def image_tokens(self, pairs: Sequence[Pair], *, at_most: bool = False) -> int:
        """Tokens the images of `pairs` (each side given as text or Content) take, every time a pair holds one, read
        from their headers before any is decoded; what only taking one in tells (a URL) is counted then, or with
        `at_most` as the most an image can take. Raises ImageRefusedError naming `pairs[i].query…` or
        `pairs[i].document…` for a header it refuses."""
        return 0

    def precompute(self, prepared: Prepared) -> None:  # noqa: B027 - most scorers have nothing to compute ahead
        """Compute what `prepared` needs besides its tokens (a vision encoder's images) now, outside the model calls
        that will score it, so those calls stay short; safe beside them in another thread."""

    def with_pending_work(self, prepared: Prepared) -> Prepared:
        """`prepared` with the work its model calls still have besides its tokens (images not encoded ahead) in the
        costs of the pairs that need it first: what a scheduler packs calls by."""
        return prepared

    def prepare(
        self,
        pairs: Sequence[Pair],
        *,
        instruction: str | None = None,
        truncation: Truncation = "right",
        long_documents: LongDocumentsSetting = None,
        max_tokens_per_doc: int | None = None,
    ) -> Prepared:
        """Validate `pairs`; a remote service tokenizes on its side, so tokens are estimated."""
        spec = LongDocuments.of(long_documents)
        if spec is not None and spec.mode == "chunk":
            raise InvalidInputError("long_documents", f"chunk mode needs a local model, not {type(self).__name__}")
        if max_tokens_per_doc is not None:
            raise InvalidInputError("max_tokens_per_doc", f"needs a local model's tokenizer, not {type(self).__name__}")
        pairs = self.check_pairs(validate_pairs(pairs))
        tokens = np.fromiter((estimate_tokens(q) + estimate_tokens(d) for q, d in pairs), np.int64, len(pairs))
        return Prepared(
            pairs, self.instruction if instruction is None else instruction, tokens, np.zeros(len(pairs), np.int64)
        )

    def check_pairs(self, pairs: list[Pair]) -> list[Pair]:
        """The validated pairs this scorer can score as they are; raises InvalidInputError naming a side it cannot take
        (a service that takes text only refuses content parts)."""
        text_only(pairs, self.model_name)
        return pairs

    def cache_keys(self, prepared: Prepared) -> list[bytes]:
        """One key per pair that is equal exactly when the pairs score the same: instruction, query, document."""
        instruction = prepared.instruction or ""
        return [digest(instruction, query, document) for query, document in prepared.pairs]

    def prefill(self, item: Prepared, pair: int, state: Any, tokens: int) -> Any:
        """The state of `tokens` more of `pair`'s tokens computed ahead, continuing `state` (None: from the start);
        only scorers with `chunk_tokens` set can. Put the last state in `Prepared.prefilled` to score the pair."""
        raise NotImplementedError(f"{type(self).__name__} scores pairs whole")

    @abstractmethod
    def score_prepared(self, items: Sequence[Prepared], *, batch_size: int | None = None) -> list[ScoreOutput]:
        """Score prepared requests together; one output per request, pairs in input order."""

    def score_detailed(
        self,
        pairs: Sequence[Pair],
        *,
        instruction: str | None = None,
        batch_size: int | None = None,
        long_documents: LongDocumentsSetting = None,
    ) -> ScoreOutput:
        """Score pairs and report token usage, truncation and (chunk mode) each score's window."""
        prepared = self.prepare(pairs, instruction=instruction, long_documents=long_documents)
        return self.score_prepared([prepared], batch_size=batch_size)[0]

    def score(
        self,
        pairs: Sequence[Pair],
        *,
        instruction: str | None = None,
        batch_size: int | None = None,
        long_documents: LongDocumentsSetting = None,
    ) -> np.ndarray:
        """Relevance of each pair in 0..1 (float32), in input order."""
        return self.score_detailed(
            pairs, instruction=instruction, batch_size=batch_size, long_documents=long_documents
        ).scores


def top_indices(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Indices of `scores` best first (ties keep input order), cut to `top_k` when given."""
    if top_k is not None and top_k < 1:
        raise InvalidInputError("top_k", f"must be ≥ 1, got {top_k}", limit="≥ 1")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if top_k is None else order[:top_k]


def group_by_instruction(instructions: Sequence[str | None]) -> dict[str | None, list[int]]:
    """Positions sharing each instruction, first-seen order."""
    groups: dict[str | None, list[int]] = {}
    for i, instruction in enumerate(instructions):
        groups.setdefault(instruction, []).append(i)
    return groups


def split_output(out: ScoreOutput, sizes: Sequence[int]) -> list[ScoreOutput]:
    """Cut one output over concatenated requests back into one output per request."""
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [out.part(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def score_per_instruction(
    items: Sequence[Prepared], score_group: Callable[[list[Pair], str | None], ScoreOutput]
) -> list[ScoreOutput]:
    """For services that take one instruction per call: score each instruction's pairs together, split back."""
    outputs: list[ScoreOutput | None] = [None] * len(items)
    for instruction, members in group_by_instruction([item.instruction for item in items]).items():
        pairs = [pair for i in members for pair in items[i].pairs]
        parts = split_output(score_group(pairs, instruction), [len(items[i]) for i in members])
        for i, part in zip(members, parts):
            outputs[i] = part
    return outputs
