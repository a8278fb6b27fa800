"""A Scorer that calls a qwen-rerank Serve endpoint (POST /v1/rerank) over HTTP, with timeouts and retries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from ..content import Pair
from ..errors import UpstreamError
from ..retry import RETRYABLE_STATUS, RetryableError, parse_retry_after, with_retries
from ..scorer import Prepared, ScoreOutput, Scorer, score_per_instruction


class EndpointScorer(Scorer):
    """Scores pairs with a remote qwen-rerank endpoint; one request per distinct query, scores in input order."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_documents: int = 1000,
        instruction: str | None = None,
    ):
        self.url = url.rstrip("/")
        self.model_name = self.url
        self._api_key = api_key
        self.timeout_s, self.max_retries, self.max_documents = timeout_s, max_retries, max_documents
        self.instruction = instruction

    def __repr__(self) -> str:  # never show the key
        return f"EndpointScorer(url={self.url!r})"

    def score_prepared(self, items: Sequence[Prepared], *, batch_size: int | None = None) -> list[ScoreOutput]:
        """Score prepared requests, one instruction at a time (the endpoint takes one per request)."""
        return score_per_instruction(items, lambda pairs, instruction: self._score(pairs, instruction, batch_size))

    def _score(self, pairs: list[Pair], instruction: str | None, batch_size: int | None) -> ScoreOutput:
        """Group pairs by query, send each group (in chunks of max_documents), and put scores back in place."""
        scores = np.zeros(len(pairs), dtype=np.float32)
        tokens = np.zeros(len(pairs), dtype=np.int64)
        groups: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(i)
        step = min(batch_size or self.max_documents, self.max_documents)
        for query, positions in groups.items():
            for start in range(0, len(positions), step):
                chunk = positions[start : start + step]
                body = {"query": query, "documents": [pairs[i][1] for i in chunk]}
                if instruction is not None:
                    body["instruction"] = instruction
                reply = with_retries(lambda body=body: self._post(body), max_retries=self.max_retries)
                for result in reply["results"]:
                    scores[chunk[result["index"]]] = result["relevance_score"]
                tokens[chunk[0]] += reply.get("usage", {}).get("total_tokens", 0)
        return ScoreOutput(scores=scores, tokens=tokens, truncated=np.zeros(len(pairs), dtype=np.int64))

    def _post(self, body: dict) -> dict:
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.url}/v1/rerank", data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            error = UpstreamError(exc.code, f"http_{exc.code}", text)
            if exc.code in RETRYABLE_STATUS:
                raise RetryableError(error, parse_retry_after(exc.headers.get("retry-after"))) from None
            raise error from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RetryableError(UpstreamError(None, "connection_error", f"{self.url}: {reason}")) from None
