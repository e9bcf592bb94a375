"""Errors of the store. Everything else the store raises comes from ``canonical.errors``.

GatewayError
└── StoreUnavailable      STORE_UNAVAILABLE    (the store database cannot be reached)
"""

from __future__ import annotations

from canonical.errors import GatewayError


class StoreUnavailable(GatewayError):
    code = "STORE_UNAVAILABLE"
    http_status = 503

    def __init__(self, database: str, *, reason: str) -> None:
        super().__init__(f"store database {database} is unreachable: {reason}", database=database)
