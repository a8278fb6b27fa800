"""Shared prompt prefixes' K/V kept across model calls (least recently used out first), bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ...graph_layout import Prefix


def prefix_bytes(prefix: Prefix) -> int:
    """Memory the K/V tensors of `prefix` hold."""
    return sum(t.nbytes for t in prefix.tensors)


class PrefixCache:
    """Prefixes keyed by their exact token ids: a query whose pairs are scored over several calls (a request cut
    across a replica's scheduler steps, or asked again) runs its prompt prefix once. K/V depend on the ids alone,
    so a cached prefix is the one a new call would compute."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, Prefix] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ids: np.ndarray) -> Prefix | None:
        """The cached prefix of exactly these ids, or None."""
        key = ids.tobytes()
        with self._lock:
            prefix = self._entries.get(key)
            if prefix is not None:
                self._entries.move_to_end(key)
            return prefix

    def put(self, ids: np.ndarray, prefix: Prefix) -> None:
        """Keep `prefix` (of these ids), evicting the least recently used while over the bound."""
        size = prefix_bytes(prefix)
        if size > self.max_bytes:
            return
        key = ids.tobytes()
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = prefix
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self.bytes -= prefix_bytes(old)

    def __len__(self) -> int:
        return len(self._entries)
