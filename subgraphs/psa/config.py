"""Connection settings of the PSA (Harvest API v2): ``P2C_PSA__ACCOUNT_ID``, ``P2C_PSA__PER_PAGE`` ..."""

from __future__ import annotations

from pydantic import Field

from subgraphs.common.config import SystemConfig

DEFAULT_BASE_URL = "http://psa.sandbox"
USER_AGENT = "p2c-gateway (ops@example.com)"


class PsaConfig(SystemConfig):
    account_id: str | None = Field(
        default=None, description="Harvest-Account-Id header; unset → client_id (what the sandbox expects)"
    )
    rate_limit_requests: int = Field(
        default=100, ge=0, description="client-side budget per window; 0 disables it (Harvest: 100 / 15 s)"
    )
    rate_limit_window_s: float = Field(default=15.0, gt=0)
    per_page: int = Field(default=2000, ge=1, le=2000, description="Harvest's maximum is 2000")
    user_agent: str = USER_AGENT
    aggregate_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="how stale the gateway's time aggregates may be: at most one incremental read "
        "(updated_since) per this many seconds per process; 0 refreshes on every read",
    )
