"""The Scorer interface every backend implements, input validation, and ranking on top of scores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError

Pair = tuple[str, str]


@dataclass(frozen=True)
class ScoreOutput:
    """Scores in input order, plus what each pair cost: tokens seen and content tokens cut."""

    scores: np.ndarray  # float32, 0..1
    tokens: np.ndarray  # int64 per pair
    truncated: np.ndarray  # int64 per pair; 0 where nothing was cut

    @property
    def total_tokens(self) -> int:
        """Tokens of all pairs together (what `usage.total_tokens` reports)."""
        return int(self.tokens.sum())


class Scorer(ABC):
    """Scores (query, document) pairs; stateless per call, results in input order."""

    model_name: str = "unknown"

    @abstractmethod
    def score_detailed(
        self, pairs: Sequence[Pair], *, instruction: str | None = None, batch_size: int | None = None
    ) -> ScoreOutput:
        """Score pairs and report token usage and truncation."""

    def score(
        self, pairs: Sequence[Pair], *, instruction: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Relevance of each pair in 0..1 (float32), in input order."""
        return self.score_detailed(pairs, instruction=instruction, batch_size=batch_size).scores


def check_text(value: object, field: str, *, allow_empty: bool) -> str:
    """Return `value` if it is a usable string, else raise InvalidInputError naming `field`."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidInputError(field, "must not be empty")
    return value


def validate_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """Check every pair is (non-empty query string, document string); raise on the first that is not."""
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidInputError(f"pairs[{i}]", "must be a (query, document) pair")
        query = check_text(pair[0], f"pairs[{i}].query", allow_empty=False)
        document = check_text(pair[1], f"pairs[{i}].document", allow_empty=True)
        checked.append((query, document))
    return checked


def top_indices(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Indices of `scores` best first (ties keep input order), cut to `top_k` when given."""
    if top_k is not None and top_k < 1:
        raise InvalidInputError("top_k", f"must be ≥ 1, got {top_k}", limit="≥ 1")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if top_k is None else order[:top_k]


def group_by_instruction(instructions: Sequence[str | None]) -> dict[str | None, list[int]]:
    """Positions sharing each instruction, first-seen order: one model call per group keeps every backend right."""
    groups: dict[str | None, list[int]] = {}
    for i, instruction in enumerate(instructions):
        groups.setdefault(instruction, []).append(i)
    return groups
