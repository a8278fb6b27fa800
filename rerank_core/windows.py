"""Long documents in overlapping windows of their tokens: where each window lies, and one score per document."""

from __future__ import annotations

import math

import numpy as np

from .config import LongDocuments


def plan_windows(doc_tokens: int, fit: int, spec: LongDocuments) -> tuple[list[tuple[int, int]], int]:
    """Windows [start, end) over a document of `doc_tokens` tokens when `fit` tokens fit beside the template and the
    query, and the tokens cut after the last allowed window.

    Window k holds tokens [k·(w−o), k·(w−o)+w); windows go on until one reaches the end (the last may be shorter),
    at most `spec.max_windows`. With the default window (w = fit), window 0 is the pair truncation would score.
    """
    window = min(spec.window_tokens or fit, fit)
    overlap = spec.overlap_tokens if spec.overlap_tokens is not None else window // 8
    stride = window - min(overlap, window - 1)
    count = 1 if doc_tokens <= window else 1 + math.ceil((doc_tokens - window) / stride)
    spans = [(k * stride, min(k * stride + window, doc_tokens)) for k in range(min(count, spec.max_windows))]
    return spans, doc_tokens - spans[-1][1]


def aggregate_windows(logits: np.ndarray, row_starts: np.ndarray, aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """Each document's logit from its windows' (rows [row_starts[i], row_starts[i+1])) and which window decided it.

    max: the best window's; mean: the logit of the windows' mean relevance; first: window 0's (FirstP). The window
    reported is the best one for max and mean, window 0 for first.
    """
    n = len(row_starts) - 1
    out, best = np.zeros(n, np.float32), np.zeros(n, np.int64)
    for i in range(n):
        part = logits[row_starts[i] : row_starts[i + 1]].astype(np.float64)
        top = int(np.argmax(part))
        if aggregate == "first":
            out[i], best[i] = part[0], 0
        elif aggregate == "mean":
            p = np.clip(np.mean(1.0 / (1.0 + np.exp(-part))), 1e-12, 1 - 1e-12)
            out[i], best[i] = math.log(p / (1 - p)), top
        else:
            out[i], best[i] = part[top], top
    return out, best
