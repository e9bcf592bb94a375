"""Settings of the Salesforce connection (``P2C_CRM__*``)."""

from __future__ import annotations

from pydantic import Field

from subgraphs.common.config import SystemConfig

#: Where the in-process sandbox is addressed when ``base_url`` is unset. The host is never resolved: the
#: client talks to the sandbox through ``httpx.ASGITransport``.
SANDBOX_BASE_URL = "http://crm.sandbox"


class CrmConfig(SystemConfig):
    api_version: str = Field(default="v62.0", pattern=r"^v\d+\.0$")
    client_name: str = Field(
        default="p2c-gateway",
        description="sent as Sforce-Call-Options client=...; change events carrying it are our own echoes",
    )
    max_concurrency: int = Field(default=8, ge=1, le=256)
    query_chunk_size: int = Field(
        default=300, ge=1, le=1000, description="ids per SOQL IN (...) list; keeps the URL well under 16 KB"
    )
    query_batch_size: int | None = Field(
        default=None, ge=200, le=2000, description="Sforce-Query-Options batchSize; None → server default"
    )
