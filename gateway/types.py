"""Type aliases shared across the gateway shell (like ``starlette/types.py``)."""

from __future__ import annotations

from typing import Any, Final, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SystemName = Literal["crm", "psa", "erp"]
SYSTEMS: Final[tuple[SystemName, ...]] = ("crm", "psa", "erp")

Mode = Literal["development", "production"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

JSONDict = dict[str, Any]

__all__ = [
    "SYSTEMS",
    "ASGIApp",
    "JSONDict",
    "LogFormat",
    "LogLevel",
    "Message",
    "Mode",
    "Receive",
    "Scope",
    "Send",
    "SystemName",
]
