"""Bearer JWT → Principal: HS256 with a secret, RS256 against a JWKS served over real HTTP, and the
``p2c token`` command whose output the authenticator must accept."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import typer
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from canonical.errors import ConfigurationError, Unauthenticated, UpstreamUnavailable
from canonical.principal import Principal, Role
from gateway.auth import AuthConfig, Authenticator, mint_dev_token
from gateway.cli import token as token_cli
from gateway.settings import load_settings

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def hs_config(**overrides: Any) -> AuthConfig:
    return AuthConfig(mode="hs256", secret=SecretStr(SECRET), **overrides)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "ana",
        "iss": "p2c-dev",
        "aud": "p2c-gateway",
        "iat": now,
        "exp": now + 600,
        "roles": ["finance"],
        "legal_entities": ["US01"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


async def rejected(authenticator: Authenticator, header: str | None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(header)
    error = caught.value
    assert error.code == "UNAUTHENTICATED"
    assert error.http_status == 401
    if header:
        # Never echo the credentials, not even a piece of them.
        credentials = header.partition(" ")[2]
        for piece in credentials.split("."):
            if len(piece) > 8:
                assert piece not in error.message
    return error


# --- HS256 ------------------------------------------------------------------------------------------


async def test_valid_token_gives_principal() -> None:
    token = mint_dev_token(SECRET, "ana", [Role.FINANCE, "auditor"], ["US01", "GB01"], ttl_s=60)
    principal = await Authenticator(hs_config()).authenticate(f"Bearer {token}")
    assert principal.subject == "ana"
    assert principal.roles == {Role.FINANCE, Role.AUDITOR}
    assert principal.legal_entities == {"US01", "GB01"}
    assert not principal.all_entities
    assert principal.token_id is not None
    assert principal.can_see_financials()


async def test_scheme_is_case_insensitive() -> None:
    principal = await Authenticator(hs_config()).authenticate(f"bearer {hs_token()}")
    assert principal.roles == {Role.FINANCE}


async def test_no_entities_claim_sees_nothing() -> None:
    principal = await Authenticator(hs_config()).authenticate(f"Bearer {hs_token(legal_entities=None)}")
    assert principal.legal_entities == frozenset()
    assert not principal.all_entities
    assert not principal.can_see_entity("US01")


@pytest.mark.parametrize("value", ["*", ["*"], ["US01", "*"]])
async def test_star_sees_every_entity(value: object) -> None:
    principal = await Authenticator(hs_config()).authenticate(f"Bearer {hs_token(legal_entities=value)}")
    assert principal.all_entities
    assert principal.can_see_entity("ZZ99")


async def test_roles_as_space_separated_string() -> None:
    token = hs_token(roles="sales delivery")
    principal = await Authenticator(hs_config()).authenticate(f"Bearer {token}")
    assert principal.roles == {Role.SALES, Role.DELIVERY}


async def test_custom_claim_names() -> None:
    config = hs_config(roles_claim="https://p2c/roles", entities_claim="https://p2c/entities")
    custom: dict[str, Any] = {"https://p2c/roles": ["auditor"], "https://p2c/entities": "*"}
    token = hs_token(roles=None, legal_entities=None, **custom)
    principal = await Authenticator(config).authenticate(f"Bearer {token}")
    assert principal.roles == {Role.AUDITOR}
    assert principal.all_entities


async def test_expired_within_leeway_is_accepted() -> None:
    now = int(time.time())
    token = hs_token(iat=now - 100, exp=now - 10)
    principal = await Authenticator(hs_config(leeway_s=30)).authenticate(f"Bearer {token}")
    assert principal.subject == "ana"


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    authenticator = Authenticator(hs_config(leeway_s=0))
    expires = int(time.time()) + 1
    header = f"Bearer {hs_token(exp=expires)}"
    first = await authenticator.authenticate(header)
    assert await authenticator.authenticate(header) is first  # verified once, remembered
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)
    assert "token expired" in (await rejected(authenticator, header)).message


async def test_remembering_a_token_admits_no_other_token() -> None:
    authenticator = Authenticator(hs_config())
    good = hs_token()
    await authenticator.authenticate(f"Bearer {good}")
    header, payload, signature = good.split(".")
    forged = jwt.encode(claims(roles=["auditor", "finance"]), "x" * 40, algorithm="HS256").split(".")[1]
    assert "bad signature" in (await rejected(authenticator, f"Bearer {header}.{forged}.{signature}")).message
    assert payload != forged


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: hs_token(iat=int(time.time()) - 600, exp=int(time.time()) - 60), "token expired"),
        (lambda: hs_token(secret="another-secret-that-is-long-enough-xxxxxx"), "bad signature"),
        (lambda: hs_token(aud="someone-else"), "wrong audience"),
        (lambda: hs_token(iss="https://evil.example"), "wrong issuer"),
        (lambda: hs_token(exp=None), "token has no 'exp' claim"),
        (lambda: hs_token(sub=None), "token has no 'sub' claim"),
        (lambda: hs_token(aud=None), "token has no 'aud' claim"),
        (lambda: hs_token(nbf=int(time.time()) + 3600), "token not yet valid"),
        (lambda: hs_token(roles=["finance", "boss"]), "unknown role 'boss'"),
        (lambda: hs_token(roles={"finance": True}), "malformed 'roles' claim"),
        (lambda: hs_token(legal_entities=[1, 2]), "malformed 'legal_entities' claim"),
        (lambda: hs_token(sub=""), "token has no subject"),
    ],
)
async def test_rejected_tokens(token: Any, reason: str) -> None:
    value = token()
    error = await rejected(Authenticator(hs_config()), f"Bearer {value}")
    assert error.message == reason


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("   ", "missing bearer token"),
        ("Bearer", "missing bearer token"),
        ("Bearer   ", "missing bearer token"),
        ("Basic dXNlcjpwYXNz", "authorization scheme must be Bearer"),
        ("Token abc.def.ghi", "authorization scheme must be Bearer"),
        ("Bearer not-a-jwt", "malformed token"),
        ("Bearer a.b", "malformed token"),
        ("Bearer abc def", "malformed token"),
        ("Bearer " + "a" * 9000, "malformed token"),
    ],
)
async def test_bad_headers(header: str | None, reason: str) -> None:
    error = await rejected(Authenticator(hs_config()), header)
    assert error.message == reason


def _unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


async def test_alg_none_is_rejected() -> None:
    error = await rejected(Authenticator(hs_config()), f"Bearer {_unsigned(claims())}")
    assert error.message == "signing algorithm not allowed"


async def test_other_hmac_algorithm_not_configured_is_rejected() -> None:
    token = jwt.encode(claims(), SECRET + SECRET, algorithm="HS512")
    error = await rejected(Authenticator(hs_config()), f"Bearer {token}")
    assert error.message == "signing algorithm not allowed"


def test_config_needs_a_long_enough_secret() -> None:
    with pytest.raises(ValidationError, match="needs a secret"):
        AuthConfig(mode="hs256")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        AuthConfig(mode="hs256", secret=SecretStr("short"))
    with pytest.raises(ValidationError, match="JWKS URL"):
        AuthConfig(mode="rs256")
    with pytest.raises(ValidationError, match="not allowed"):
        AuthConfig(mode="rs256", jwks_url="https://idp/jwks", algorithms=("RS256", "HS256"))
    with pytest.raises(ValidationError, match="not allowed"):
        hs_config(algorithms=("none",))


def test_config_from_settings() -> None:
    development = AuthConfig.from_settings(load_settings(complete=False))
    assert development.mode == "hs256"
    assert development.algorithms == ("HS256",)
    rs = AuthConfig.from_settings(load_settings(complete=False, jwks_url="https://idp.example/jwks"))
    assert rs.mode == "rs256"
    assert rs.algorithms == ("RS256",)
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        AuthConfig.from_settings(load_settings(complete=False, jwt_secret="short"))


# --- RS256 via JWKS -------------------------------------------------------------------------------


@dataclass
class JwksServer:
    url: str
    keys: list[dict[str, Any]]
    hits: list[str] = field(default_factory=list)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return public | {"kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture
def jwks(signing_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    """A JWKS endpoint on 127.0.0.1 over real HTTP (PyJWKClient fetches with urllib)."""
    state = JwksServer(url="", keys=[_jwk(signing_key, "key-1")])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def rs_config(url: str) -> AuthConfig:
    return AuthConfig(mode="rs256", jwks_url=url, issuer="https://idp.example", audience="p2c-gateway")


def rs_token(key: rsa.RSAPrivateKey, kid: str | None = "key-1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(iss="https://idp.example", **overrides), key, algorithm="RS256", headers=headers)


async def test_rs256_valid_token(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    authenticator = Authenticator(rs_config(jwks.url))
    principal = await authenticator.authenticate(f"Bearer {rs_token(signing_key)}")
    assert principal == Principal("ana", frozenset({Role.FINANCE}), frozenset({"US01"}))
    again = await authenticator.authenticate(f"Bearer {rs_token(signing_key, roles=['auditor'])}")
    assert again.roles == {Role.AUDITOR}
    assert jwks.hits == ["/.well-known/jwks.json"]  # the key set is cached


async def test_rs256_kid_mismatch(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    error = await rejected(Authenticator(rs_config(jwks.url)), f"Bearer {rs_token(signing_key, 'key-9')}")
    assert error.message == "unknown signing key"


async def test_rs256_missing_kid(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    error = await rejected(Authenticator(rs_config(jwks.url)), f"Bearer {rs_token(signing_key, None)}")
    assert error.message == "token has no key id"
    assert jwks.hits == []


async def test_rs256_other_key_same_kid(jwks: JwksServer) -> None:
    error = await rejected(Authenticator(rs_config(jwks.url)), f"Bearer {rs_token(_rsa_key())}")
    assert error.message == "bad signature"


async def test_rs256_expired_and_wrong_audience(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    authenticator = Authenticator(rs_config(jwks.url))
    now = int(time.time())
    expired = rs_token(signing_key, iat=now - 900, exp=now - 300)
    assert (await rejected(authenticator, f"Bearer {expired}")).message == "token expired"
    foreign = rs_token(signing_key, aud="other-api")
    assert (await rejected(authenticator, f"Bearer {foreign}")).message == "wrong audience"


async def test_rs256_refuses_hmac_tokens(jwks: JwksServer) -> None:
    # Key confusion: an HS256 token must never be checked against anything in rs256 mode.
    token = jwt.encode(claims(iss="https://idp.example"), SECRET, algorithm="HS256", headers={"kid": "key-1"})
    error = await rejected(Authenticator(rs_config(jwks.url)), f"Bearer {token}")
    assert error.message == "signing algorithm not allowed"
    assert jwks.hits == []


async def test_rs256_picks_up_a_rotated_key(jwks: JwksServer, signing_key: rsa.RSAPrivateKey) -> None:
    config = rs_config(jwks.url)
    client = jwt.PyJWKClient(jwks.url, lifespan=300, cooldown_duration=0)
    authenticator = Authenticator(config, jwks_client=client)
    await authenticator.authenticate(f"Bearer {rs_token(signing_key)}")
    new_key = _rsa_key()
    jwks.keys.append(_jwk(new_key, "key-2"))
    principal = await authenticator.authenticate(f"Bearer {rs_token(new_key, 'key-2')}")
    assert principal.subject == "ana"
    assert len(jwks.hits) == 2  # cached once, refreshed once for the unknown kid


async def test_rs256_unreachable_jwks_is_upstream_unavailable(signing_key: rsa.RSAPrivateKey) -> None:
    authenticator = Authenticator(rs_config("http://127.0.0.1:9/jwks.json"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await authenticator.authenticate(f"Bearer {rs_token(signing_key)}")
    assert caught.value.code == "UPSTREAM_UNAVAILABLE"
    assert caught.value.system == "jwks"


# --- p2c token --------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    token_cli.register(app)

    @app.callback()
    def root() -> None:  # a group, so the command is invoked as "token" like under p2c
        pass

    return app


def dev_authenticator() -> Authenticator:
    return Authenticator(AuthConfig.from_settings(load_settings(complete=False)))


async def test_token_command_prints_an_accepted_token(cli: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli, ["token", "--role", "finance", "--role", "auditor", "--entity", "US01", "--subject", "bo"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    principal = await dev_authenticator().authenticate(f"Bearer {lines[0]}")
    assert principal.subject == "bo"
    assert principal.roles == {Role.FINANCE, Role.AUDITOR}
    assert principal.legal_entities == {"US01"}
    exp = jwt.decode(lines[0], options={"verify_signature": False})["exp"]
    assert exp == pytest.approx(time.time() + 8 * 3600, abs=60)


async def test_token_command_all_entities_and_ttl(cli: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli, ["token", "--role", "integration_admin", "--entity", "*", "--ttl", "90m"]
    )
    assert result.exit_code == 0, result.output
    principal = await dev_authenticator().authenticate(f"Bearer {result.stdout.strip()}")
    assert principal.all_entities
    exp = jwt.decode(result.stdout.strip(), options={"verify_signature": False})["exp"]
    assert exp == pytest.approx(time.time() + 90 * 60, abs=60)


async def test_token_command_uses_the_configured_secret(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2C_JWT_SECRET", SECRET)
    result = CliRunner().invoke(cli, ["token", "--role", "sales", "--entity", "GB01"])
    assert result.exit_code == 0, result.output
    principal = await Authenticator(hs_config()).authenticate(f"Bearer {result.stdout.strip()}")
    assert principal.roles == {Role.SALES}


def test_token_command_without_entity_warns_on_stderr(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["token", "--role", "sales"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1
    assert "sees no legal entity" in result.stderr


def test_token_command_refuses_in_production(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2C_MODE", "production")
    monkeypatch.setenv("P2C_JWT_SECRET", SECRET)
    result = CliRunner().invoke(cli, ["token", "--role", "finance", "--entity", "US01"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "production" in result.stderr


def test_token_command_refuses_when_gateway_uses_jwks(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2C_JWKS_URL", "https://idp.example/jwks")
    result = CliRunner().invoke(cli, ["token", "--role", "finance"])
    assert result.exit_code == 2
    assert "P2C_JWKS_URL" in result.stderr


@pytest.mark.parametrize("args", [["--role", "boss"], ["--role", "sales", "--ttl", "soon"], []])
def test_token_command_bad_input(cli: typer.Typer, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["token", *args])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_mint_dev_token_rejects_unknown_roles() -> None:
    with pytest.raises(ValueError):
        mint_dev_token(SECRET, "ana", ["boss"], ["US01"])
