"""A client-side request budget as an httpx transport, so the connector rarely meets Harvest's 429.

Harvest counts requests in a rolling window (100 per 15 s). A token bucket of 100 refilling at
100/15 s would allow ~200 requests in the first 15 s and trip the limit, so this is a sliding-window
log instead: the (n+1)-th request waits until the oldest of the last n leaves the window, plus a small
margin for the latency between our send and the vendor's count.

    transport = RateBudget(httpx.AsyncHTTPTransport(), requests=100, window_s=15)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from subgraphs.common.transport import Sleep


@dataclass
class BudgetStats:
    sent: int = 0
    waits: int = 0
    waited_s: float = 0.0
    limited: int = 0  # 429s the vendor still answered (each attempt, before any retry)


class RateBudget(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        requests: int,
        window_s: float,
        margin_s: float = 0.05,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.requests = requests  # 0 → no budget, only counting
        self.window_s = window_s
        self.margin_s = margin_s
        self._sleep = sleep
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.stats = BudgetStats()

    async def _acquire(self) -> None:
        if self.requests <= 0:
            return
        # Waiting while holding the lock keeps waiters in arrival order.
        async with self._lock:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window_s + self.margin_s:
                self._sent.popleft()
            if len(self._sent) >= self.requests:
                wait = self._sent[0] + self.window_s + self.margin_s - now
                self.stats.waits += 1
                self.stats.waited_s += wait
                await self._sleep(wait)
                self._sent.popleft()
                now = max(self._clock(), now + wait)
            self._sent.append(now)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._acquire()
        self.stats.sent += 1
        response = await self.inner.handle_async_request(request)
        if response.status_code == 429:
            self.stats.limited += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
