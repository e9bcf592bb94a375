"""Connection settings of one vendor system. The gateway's settings nest one per system
(``P2C_CRM__BASE_URL``, ``P2C_ERP__CLIENT_SECRET`` ...)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class RetryConfig(BaseModel):
    """How hard a connector tries before it gives up with a typed error."""

    attempts: int = Field(default=5, ge=1, le=20, description="total tries, the first included")
    backoff_initial_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    max_retry_after_s: float = Field(
        default=60.0, ge=0, description="a Retry-After longer than this ends the retries at once"
    )
    budget_s: float = Field(default=60.0, gt=0, description="wall-clock budget for one call with retries")


class SystemConfig(BaseModel):
    base_url: str | None = Field(default=None, description="vendor root URL; unset → the in-process sandbox")
    client_id: str = "p2c-demo"
    client_secret: SecretStr = SecretStr("p2c-demo-secret")
    timeout_s: float = Field(default=15.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    retry: RetryConfig = Field(default_factory=RetryConfig)
