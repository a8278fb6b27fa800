"""A replica's budget of image tokens held decoded at once: each request's images are decoded only once its tokens fit,
first come first served, so concurrent image requests cannot take a replica past its memory."""

from __future__ import annotations

import asyncio
from collections import deque


class ImageBudget:
    """Image tokens (from the headers, before decoding) the requests in a replica hold; a request larger than the
    whole budget runs when nothing else holds any. Used from the replica's event loop only."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future]] = deque()

    async def acquire(self, tokens: int) -> bool:
        """Hold `tokens` of the budget, waiting behind earlier requests until they fit; whether it waited. Cancelled
        while waiting (a deadline, a client gone), it holds nothing."""
        if not tokens:
            return False
        if not self._waiting and self._fits(tokens):
            self.held += tokens
            return False
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((tokens, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted just as it was cancelled: give it back
                self.release(tokens)
            elif (tokens, turn) in self._waiting:
                self._waiting.remove((tokens, turn))
                self._grant()  # it may have held back smaller requests behind it
            raise
        return True

    def release(self, tokens: int) -> None:
        """Give back what `acquire` held, and let the requests that now fit go."""
        self.held -= tokens
        self._grant()

    def _fits(self, tokens: int) -> bool:
        return self.held == 0 or self.held + tokens <= self.limit

    def _grant(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            tokens, turn = self._waiting.popleft()
            if turn.cancelled():  # its waiter is being told; it holds nothing
                continue
            self.held += tokens
            turn.set_result(None)
