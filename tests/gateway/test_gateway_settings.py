from __future__ import annotations

import pytest

from canonical.errors import ConfigurationError
from gateway.app import create_app
from gateway.settings import DEFAULT_DATABASE_URL, Settings, load_settings

PRODUCTION_ENV = {
    "P2C_MODE": "production",
    "P2C_DATABASE_URL": "postgresql+asyncpg://p2c@db:5432/p2c",
    "P2C_JWT_SECRET": "s3cret-jwt",
    "P2C_WEBHOOK_SECRET": "s3cret-webhook",
    "P2C_CRM__BASE_URL": "https://acme.my.salesforce.com",
    "P2C_PSA__BASE_URL": "https://api.harvestapp.com",
    "P2C_ERP__BASE_URL": "https://1234.suitetalk.api.netsuite.com",
}


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_defaults_are_the_embedded_demo() -> None:
    settings = load_settings()
    assert settings.mode == "development"
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./p2c.sqlite"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.demo_seed, settings.demo_accounts) == (7, 200)
    assert settings.mapping_path is None
    assert settings.embedded_systems() == ["crm", "psa", "erp"]
    assert settings.jwt_secret is not None  # development signing secret
    assert settings.log_format == "console"


def test_nested_system_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_ERP__BASE_URL", "https://erp.example.com")
    monkeypatch.setenv("P2C_ERP__CLIENT_SECRET", "erp-secret")
    monkeypatch.setenv("P2C_CRM__TIMEOUT_S", "3.5")
    monkeypatch.setenv("P2C_PSA__RETRY__ATTEMPTS", "2")
    settings = load_settings()
    assert settings.erp.base_url == "https://erp.example.com"
    assert settings.erp.client_secret.get_secret_value() == "erp-secret"
    assert settings.crm.timeout_s == 3.5
    assert settings.psa.retry.attempts == 2
    assert settings.embedded_systems() == ["crm", "psa"]
    assert "erp-secret" not in repr(settings)


def test_production_without_jwt_secret_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION_ENV.items() if k != "P2C_JWT_SECRET"})
    with pytest.raises(
        ConfigurationError, match=r"^P2C_JWT_SECRET \(or P2C_JWKS_URL\) is required in production"
    ):
        load_settings()


def test_production_names_every_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_MODE", "production")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = caught.value.message
    for name in (
        "P2C_DATABASE_URL",
        "P2C_JWT_SECRET",
        "P2C_WEBHOOK_SECRET",
        "P2C_CRM__BASE_URL",
        "P2C_PSA__BASE_URL",
        "P2C_ERP__BASE_URL",
    ):
        assert name in message
    assert "\n" not in message


def test_production_accepts_jwks_instead_of_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION_ENV.items() if k != "P2C_JWT_SECRET"})
    monkeypatch.setenv("P2C_JWKS_URL", "https://idp.example.com/.well-known/jwks.json")
    monkeypatch.setenv("P2C_JWT_ISSUER", "https://idp.example.com/")
    settings = load_settings()
    assert settings.jwt_secret is None
    assert settings.log_format == "json"
    assert settings.embedded_systems() == []


def test_production_with_jwks_needs_the_providers_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in PRODUCTION_ENV.items() if k != "P2C_JWT_SECRET"})
    monkeypatch.setenv("P2C_JWKS_URL", "https://idp.example.com/.well-known/jwks.json")
    with pytest.raises(ConfigurationError, match="P2C_JWT_ISSUER"):
        load_settings()


def test_complete_production_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION_ENV)
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "s3cret-jwt"
    assert "s3cret" not in str(settings.model_dump())


def test_invalid_nested_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_CRM__TIMEOUT_S", "abc")
    with pytest.raises(ConfigurationError, match=r"^P2C_CRM__TIMEOUT_S: .*number"):
        load_settings()


def test_invalid_mode_and_port_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_MODE", "staging")
    monkeypatch.setenv("P2C_PORT", "70000")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "P2C_MODE:" in caught.value.message
    assert "P2C_PORT:" in caught.value.message


def test_unparseable_database_url_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"^P2C_DATABASE_URL: .*cannot be parsed"):
        load_settings(database_url="not a url")


def test_create_app_refuses_incomplete_production_settings() -> None:
    settings = Settings(mode="production")  # built without load_settings' check
    with pytest.raises(ConfigurationError, match="P2C_WEBHOOK_SECRET"):
        create_app(settings)
