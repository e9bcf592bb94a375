"""Outbound change-event delivery: one signed POST per event, best effort with a short retry.

Like Salesforce's outbound messages, delivery is at-least-once and may reorder events, so receivers
dedupe by ``X-P2C-Event-Id`` (the replay id). The transport is an injectable callable so an in-process
gateway can receive over ``httpx.ASGITransport`` without a socket::

    webhooks.deliver = deliver_via(httpx.AsyncClient(transport=httpx.ASGITransport(gateway_app)))
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

#: deliver(url, body, headers) -> HTTP status of the receiver
Deliver = Callable[[str, bytes, dict[str, str]], Awaitable[int]]
log = logging.getLogger("crm.sandbox.webhooks")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_via(client: httpx.AsyncClient) -> Deliver:
    async def deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
        response = await client.post(url, content=body, headers=headers)
        return response.status_code

    return deliver


async def _deliver_fresh(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await deliver_via(client)(url, body, headers)


class Webhooks:
    def __init__(self, deliver: Deliver | None = None, *, attempts: int = 3, backoff_s: float = 0.05) -> None:
        self.deliver: Deliver = deliver or _deliver_fresh
        self.url: str | None = None
        self.secret = ""
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self._pending: set[asyncio.Task[None]] = set()

    def configure(self, url: str | None, secret: str = "") -> None:
        self.url, self.secret = url, secret

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pending": len(self._pending),
            "delivered": self.delivered,
            "failed": self.failed,
        }

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Schedule delivery; called after the change committed, inside a running event loop."""
        if not self.url:
            return
        for event in events:
            task = asyncio.get_running_loop().create_task(self._send(self.url, self.secret, event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for every scheduled delivery (tests, orderly shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def _send(self, url: str, secret: str, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-P2C-Signature": sign(body, secret),
            "X-P2C-Event-Id": str(event["replayId"]),
        }
        for attempt in range(self.attempts):
            try:
                status = await self.deliver(url, body, headers)
            except Exception as exc:  # any receiver failure is retried, then logged; never raised
                log.warning("crm.webhook.failed replay_id=%s error=%s", event["replayId"], type(exc).__name__)
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                log.warning("crm.webhook.refused replay_id=%s status=%s", event["replayId"], status)
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
