"""Exact scores of recently scored pairs, keyed by what the score depends on, least recently used out first."""

from __future__ import annotations

import sys
from collections import OrderedDict

# What one entry holds besides its key: the OrderedDict's slot and links, the value tuple and its two floats.
_ENTRY_OVERHEAD = 100 + sys.getsizeof((0.0, 0.0)) + 2 * sys.getsizeof(0.0)


class ScoreCache:
    """(score, logit) by pair key (Scorer.cache_keys), at most `max_bytes` of keys and entries; 0 keeps nothing."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    @staticmethod
    def entry_bytes(key: bytes) -> int:
        """Memory one entry takes, its key included."""
        return sys.getsizeof(key) + _ENTRY_OVERHEAD

    def get(self, key: bytes) -> tuple[float, float] | None:
        """The (score, logit) stored for `key`, or None."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: bytes, score: float, logit: float) -> None:
        """Store a fresh score, evicting the least recently used entries while over the bound."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        size = self.entry_bytes(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (score, logit)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old, _ = self._entries.popitem(last=False)
            self.bytes -= self.entry_bytes(old)

    def __len__(self) -> int:
        return len(self._entries)
