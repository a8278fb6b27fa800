"""Running a past-K/V graph (manifest `past_kv`): a prefix's keys and values computed once, continuations scored on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


@dataclass(frozen=True)
class PastKv:
    """Keys and values of one prefix: per layer [1, kv_heads, length, head_dim], in the graph's input order."""

    tensors: list[np.ndarray]
    length: int


class PastKvGraph:
    """A session over a graph with inputs input_ids, last_index, past_key_i/past_value_i and outputs logit, key_i/value_i."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        past = [i for i in session.get_inputs() if i.name.startswith(("past_key_", "past_value_"))]
        self._past_names = [i.name for i in past]
        self.input_names = ["input_ids", "last_index", *self._past_names]
        self._present_names = [name.removeprefix("past_") for name in self._past_names]
        _, heads, _, head_dim = past[0].shape
        dtype = _TYPES[past[0].type]
        self.empty = PastKv([np.zeros((1, heads, 0, head_dim), dtype)] * len(past), 0)

    def extend(self, past: PastKv, ids: np.ndarray, chunk: int) -> PastKv:
        """The K/V of prefix `past` followed by token ids `ids`, computed `chunk` tokens per call."""
        for start in range(0, len(ids), max(chunk, 1)):
            part = ids[start : start + chunk][None, :]
            new = self.session.run(self._present_names, self._feed(part, np.array([part.shape[1] - 1]), past))
            past = PastKv([np.concatenate([old, add], axis=2) for old, add in zip(past.tensors, new)],
                          past.length + part.shape[1])
        return past

    def score(self, input_ids: np.ndarray, last_index: np.ndarray, past: PastKv) -> np.ndarray:
        """l_yes − l_no at `last_index` of each right-padded row continuing prefix `past`."""
        return self.session.run(["logit"], self._feed(input_ids, last_index, past))[0].astype(np.float32)

    def _feed(self, input_ids: np.ndarray, last_index: np.ndarray, past: PastKv) -> dict:
        return {"input_ids": input_ids, "last_index": last_index, **dict(zip(self._past_names, past.tensors))}
