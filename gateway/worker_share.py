"""A vendor's concurrency cap shared by the workers: each worker holding work of some kinds takes its part.

    share = SharedCap(concurrency_limit(deps.erp.transport), total=15, kinds=POSTING_KINDS)
    worker = Worker(sessionmaker, handlers, shared=[share])   # divided again at every claim

NetSuite caps concurrent requests per *account* (15 at the lowest tier), not per process. A fixed
``cap // workers`` per worker leaves the remainder unused (7 + 7 of 15), and the last worker still busy at
the end of a spike keeps using only its half. So the cap is divided from the queue itself: the workers
holding unexpired claims of ``kinds`` are the ones writing to the vendor, and ``total`` is split between
them — ``total // n`` each, the first ``total % n`` of them by name one more (15 over 2: 8 + 7); a worker
alone takes all of it.

Why this and not a lock per request (a store row or a PostgreSQL advisory lock per slot): that costs a
store round trip per vendor request, at 300 requests/s on the cores that also run the workers and the
store, and a per-request lease that must be recovered after a crash. The claims already exist, are
already leased and are already read in the claim's transaction; there is nothing new to keep alive.

What it does not promise, and why that is safe:

- A worker that died keeps its part until its leases run out: the others use *less* than ``total``.
- A worker learns of a newcomer at its next claim (about one batch), so for that long the parts can add
  up to more than ``total``. The vendor answers the excess with 429 + Retry-After, which the connector's
  retry layer honours; the writes are upserts by external id, so a retried one never duplicates.
- ``total`` is this integration's part of the account's cap: other integrations of the account share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from subgraphs.common.transport import ConcurrencyLimit


def split(total: int, me: str, holders: Iterable[str]) -> int:
    """``me``'s part of ``total`` among ``holders`` (``me`` always counts): ``total // n``, one more for
    the first ``total % n`` names in order, never below 1."""
    names = sorted({*holders, me})
    whole, rest = divmod(total, len(names))
    return max(1, whole + (1 if names.index(me) < rest else 0))


@dataclass
class SharedCap:
    """``limit`` (this process's gate to the vendor) resized to its part of ``total`` among the workers
    holding claims of ``kinds``."""

    limit: ConcurrencyLimit
    total: int
    kinds: frozenset[str]

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError("a shared cap needs at least 1 slot")

    def apply(self, me: str, holders: Iterable[str]) -> int:
        """Resize to ``me``'s part; the new limit."""
        part = split(self.total, me, holders)
        if part != self.limit.limit:
            self.limit.resize(part)
        return part


def concurrency_limit(transport: httpx.AsyncBaseTransport | None) -> ConcurrencyLimit:
    """The ``ConcurrencyLimit`` in a connector's stack (``RetryTransport(ConcurrencyLimit(...))``)."""
    layer: object = transport
    while layer is not None:
        if isinstance(layer, ConcurrencyLimit):
            return layer
        layer = getattr(layer, "inner", None)
    raise TypeError("the connector's transport has no concurrency limit to share")


__all__ = ["SharedCap", "concurrency_limit", "split"]
