"""The event loop a long-running gateway process runs on: uvloop when installed, else asyncio's own.

    report = run(run_worker(settings, ...))

A posting worker spends most of its CPU in the loop itself — sockets, callbacks, timers — around ~300
upstream requests a second (``bench/month_end.py``); uvloop (libuv, shipped with ``uvicorn[standard]``,
which ``p2c serve`` already runs on) does that part several times faster, so responses are picked up sooner
and the ERP's concurrency slots are handed on sooner. ``P2C_EVENT_LOOP=asyncio`` keeps the standard loop
(for debugging with asyncio's debug mode, or a platform without uvloop).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from canonical.errors import ConfigurationError

T = TypeVar("T")
ENV = "P2C_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's default) when asked for or not installed."""
    choice = os.environ.get(ENV, "auto").strip().lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigurationError(f"{ENV} must be auto, uvloop or asyncio, not {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
