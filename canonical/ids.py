"""Stable canonical ids.

A canonical id is a UUIDv5 over (system, record type, the id in the system that first introduced the
record). Re-running a backfill or replaying an event can therefore never mint a second id for the same
thing, and the external ids we write to vendors stay valid across store loss.

>>> canonical_id("crm", "Account", "001xx0000001AAA") == canonical_id("crm", "Account", "001xx0000001AAA")
True
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Literal

# Fixed namespace: changing it would re-key every record of every firm. Never change it.
NAMESPACE = uuid.UUID("6f1c8f1e-3b0a-5d8e-9a55-2c1f0b7d4e21")

System = Literal["crm", "psa", "erp"]
SYSTEMS: tuple[System, ...] = ("crm", "psa", "erp")


def canonical_id(system: str, record_type: str, source_id: str | int) -> str:
    """Deterministic id of a record first seen in ``system`` as ``record_type`` ``source_id``."""
    return _uuid5(f"{system}:{record_type}:{source_id}")


# Pure, and hot: the graph maps thousands of records per request, each naming several neighbours.
# Bounded so a long-lived process does not keep every id it ever saw.
@lru_cache(maxsize=1 << 16)
def _uuid5(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def step_key(system: str, record_type: str, *parts: str | int) -> str:
    """Deterministic key of an outbound write, e.g. ``erp:customer:<canonical id>``."""
    return ":".join([system, record_type, *(str(p) for p in parts)])
