"""The gateway's one typed settings object.

Every value comes from the environment (prefix ``P2C_``, ``__`` between nested names), is validated
once at start-up and then passed down — request code never reads the environment::

    P2C_MODE=production
    P2C_DATABASE_URL=postgresql+asyncpg://p2c@db/p2c
    P2C_JWT_SECRET=...            # or P2C_JWKS_URL
    P2C_WEBHOOK_SECRET=...
    P2C_CRM__BASE_URL=https://acme.my.salesforce.com
    P2C_CRM__CLIENT_SECRET=...
    P2C_CRM__TIMEOUT_S=10
    P2C_LEGAL_ENTITIES__EU01__ERP=tryton   # which ERP books each legal entity (default netsuite)
    P2C_TRYTON__BASE_URL=http://127.0.0.1:8001  P2C_TRYTON__PASSWORD=...   # `p2c erp tryton init`

``load_settings()`` turns every problem into a ``ConfigurationError`` naming the variable to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from canonical.errors import ConfigurationError
from gateway.types import SYSTEMS, LogFormat, LogLevel, Mode
from store.db import parse_url
from subgraphs.common.config import SystemConfig

# The per-system config models are written alongside the connectors; until one exists the gateway
# falls back to the common model so it still starts.
try:
    from subgraphs.crm.config import CrmConfig
except ImportError:  # pragma: no cover - depends on what is installed
    CrmConfig = SystemConfig  # type: ignore[misc, assignment, unused-ignore]
try:
    from subgraphs.psa.config import PsaConfig
except ImportError:  # pragma: no cover
    PsaConfig = SystemConfig  # type: ignore[misc, assignment, unused-ignore]
try:
    from subgraphs.erp.config import ErpConfig
except ImportError:  # pragma: no cover
    ErpConfig = SystemConfig  # type: ignore[misc, assignment, unused-ignore]
try:
    from subgraphs.erp_tryton.config import TrytonConfig
except ImportError:  # pragma: no cover
    TrytonConfig = SystemConfig  # type: ignore[misc, assignment, unused-ignore]

ENV_PREFIX = "P2C_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./p2c.sqlite"
# Signing secrets usable only on a developer's machine; production refuses to start without real ones.
_DEV_JWT_SECRET = "p2c-development-jwt-secret-do-not-use-in-production"
_DEV_WEBHOOK_SECRET = "p2c-development-webhook-secret"


def env_name(*loc: str | int) -> str:
    """The variable behind a settings location: ``("crm", "timeout_s")`` → ``P2C_CRM__TIMEOUT_S``."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


class LegalEntityErp(BaseModel):
    """Per legal entity: the ERP that books it. One gateway can run a NetSuite and a Tryton entity."""

    erp: Literal["netsuite", "tryton"] = "netsuite"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    mode: Mode = "development"
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_audience: str = "p2c-gateway"
    jwt_issuer: str = "p2c-dev"
    jwt_leeway_s: float = Field(default=30, ge=0, le=300)
    webhook_secret: SecretStr | None = None

    mapping_path: Path | None = Field(default=None, description="unset → the shipped demo mapping")
    demo_seed: int = 7
    demo_accounts: int = Field(default=200, ge=0)

    log_level: LogLevel = "INFO"
    log_format: LogFormat | None = Field(
        default=None, description="unset → console in development, json in production"
    )
    readiness_timeout_s: float = Field(default=2.0, gt=0)
    graphql_timeout_s: float = Field(default=30, gt=0, description="whole /graphql request, auth included")
    graphql_max_body_bytes: int = Field(default=1_000_000, gt=0)
    graphql_batching: bool = Field(
        default=True, description="false → naive per-key upstream calls; for benchmarks only"
    )
    tracing_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="OpenTelemetry spans: none, console (stdout) or otlp (OTLP over HTTP)"
    )
    tracing_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces URL; unset → OTEL_EXPORTER_OTLP_* or localhost:4318"
    )
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1, description="share of new traces kept")

    crm: CrmConfig = Field(default_factory=CrmConfig)
    psa: PsaConfig = Field(default_factory=PsaConfig)
    erp: ErpConfig = Field(default_factory=ErpConfig)
    tryton: TrytonConfig = Field(default_factory=TrytonConfig)
    legal_entities: dict[str, LegalEntityErp] = Field(
        default_factory=dict, description="legal entity code → its ERP; unset → netsuite"
    )

    @field_validator("database_url")
    @classmethod
    def _parseable_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except ConfigurationError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("legal_entities", mode="after")
    @classmethod
    def _entity_codes(cls, value: dict[str, LegalEntityErp]) -> dict[str, LegalEntityErp]:
        return {code.upper(): choice for code, choice in value.items()}  # env names arrive lower-cased

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _development_defaults(self) -> Settings:
        if self.mode == "development":
            if self.jwt_secret is None and self.jwks_url is None:
                self.jwt_secret = SecretStr(_DEV_JWT_SECRET)
            if self.webhook_secret is None:
                self.webhook_secret = SecretStr(_DEV_WEBHOOK_SECRET)
        if self.log_format is None:
            self.log_format = "json" if self.mode == "production" else "console"
        on_tryton = [code for code, choice in self.legal_entities.items() if choice.erp == "tryton"]
        if on_tryton and not getattr(self.tryton, "base_url", None):
            # Tryton has no in-process sandbox: a real server is needed (`p2c erp tryton init`).
            raise ValueError(
                f"{env_name('tryton', 'base_url')} is required: {', '.join(sorted(on_tryton))} "
                "book(s) in Tryton (run `p2c erp tryton init` for a demo server)"
            )
        return self

    def erp_by_entity(self) -> dict[str, str]:
        """Legal entity code → "netsuite" | "tryton", for the entities configured explicitly."""
        return {code: choice.erp for code, choice in self.legal_entities.items()}

    def system(self, name: str) -> SystemConfig:
        config: SystemConfig = getattr(self, name)
        return config

    def missing_for_production(self) -> list[str]:
        """Names of the settings production mode needs but did not get (empty in development)."""
        if self.mode != "production":
            return []
        missing: list[str] = []
        if "database_url" not in self.model_fields_set:
            missing.append(env_name("database_url"))
        if self.jwt_secret is None and self.jwks_url is None:
            missing.append(f"{env_name('jwt_secret')} (or {env_name('jwks_url')})")
        if self.jwks_url is not None and "jwt_issuer" not in self.model_fields_set:
            # With an identity provider's keys, the issuer must be the provider's, never our dev issuer.
            missing.append(env_name("jwt_issuer"))
        if self.webhook_secret is None:
            missing.append(env_name("webhook_secret"))
        missing.extend(env_name(name, "base_url") for name in SYSTEMS if self.system(name).base_url is None)
        return missing

    def require_complete(self) -> None:
        missing = self.missing_for_production()
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ConfigurationError(
                f"{', '.join(missing)} {verb} required in production mode", settings=missing
            )

    def embedded_systems(self) -> list[str]:
        """Systems served by the in-process sandbox (no ``base_url``)."""
        return [name for name in SYSTEMS if self.system(name).base_url is None]


def load_settings(*, complete: bool = True, **overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides, e.g. from CLI flags) into ``Settings``.

    Raises ``ConfigurationError`` naming the environment variable of each bad value and — unless
    ``complete=False``, for tools that need only part of the settings — each one production lacks.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from None
    if complete:
        settings.require_complete()
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if isinstance(part, str)]
        parts.append(f"{env_name(*loc)}: {error['msg']}")
    return "; ".join(parts)
