"""Where an integration's scores come from: a local model (any `from_pretrained` name and options), a Reranker
already made, or a qwen-rerank endpoint's URL — exactly one."""

from __future__ import annotations

from typing import Any

from ..api import Reranker


def reranker_for(
    model: str | Reranker | None = None, endpoint: str | None = None, api_key: str | None = None, **options: Any
) -> Reranker:
    """The Reranker an integration scores with: `model` (a name or folder, loaded with `options`, or a Reranker), or
    `endpoint` (a qwen-rerank URL, with `api_key`); giving both or neither raises ValueError."""
    if (model is None) == (endpoint is None):
        raise ValueError("give exactly one of model= (local model or Reranker) or endpoint= (qwen-rerank URL)")
    if isinstance(model, Reranker):
        return model
    if model is not None:
        return Reranker.from_pretrained(model, **options)
    return Reranker.from_endpoint(endpoint, api_key=api_key, **options)
