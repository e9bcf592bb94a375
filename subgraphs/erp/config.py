"""ERP (NetSuite) connection settings: ``P2C_ERP__*``."""

from __future__ import annotations

from pydantic import Field

from subgraphs.common.config import SystemConfig

SANDBOX_URL = "http://erp.sandbox"


class ErpConfig(SystemConfig):
    account_id: str = Field(default="SANDBOX", description="NetSuite account id (kid / host prefix)")
    #: Below the account's cap (15 at the lowest tier): other integrations share it.
    max_concurrency: int = Field(default=10, ge=1, le=256)
    token_path: str = "/services/rest/auth/oauth2/v1/token"
    token_lifetime_s: int = Field(default=300, ge=30, description="exp of the client assertion")
    page_size: int = Field(default=1000, ge=1, le=1000)
    in_list_max: int = Field(default=500, ge=1, le=1000, description="ids per SuiteQL IN (...) list")
    reference_ttl_s: float = Field(default=900.0, ge=0, description="reference data cache lifetime")
    #: Texts by which a refusal is recognised as a closed posting period (vendor wording varies by release).
    period_closed_patterns: tuple[str, ...] = (
        "period .* is closed",
        "closed period",
        "not within the date range of your accounting period",
    )
    project_closed_patterns: tuple[str, ...] = ("project .* is closed", "closed project")
