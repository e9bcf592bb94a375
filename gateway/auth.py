"""Bearer JWT → ``Principal``.

Two modes, chosen from settings (``AuthConfig.from_settings``):

* ``hs256`` — tokens signed with a shared secret (``P2C_JWT_SECRET``). Development and tests; ``p2c token``
  mints them with ``mint_dev_token``.
* ``rs256`` — tokens signed by an identity provider, public keys fetched from its JWKS URL
  (``P2C_JWKS_URL``), cached, looked up by the token's ``kid``.

Every token is checked for signature, expiry (with ``leeway_s``), audience and issuer, and must carry
``sub``. Claims map to the principal least-privilege first: an unknown role rejects the token, and a
token without the legal-entities claim sees no legal entity (``"*"`` grants all of them).

A token that verified is remembered, per process, until it expires (``exp`` plus ``leeway_s``) or for
``VERIFIED_TTL_S`` seconds, whichever comes first: the same token string again skips the signature check
and the claim mapping (the string is what was signed, so nothing about it can differ). The only staleness
this adds: an RS256 key withdrawn from the JWKS still admits tokens it signed and that were seen in the
last ``VERIFIED_TTL_S`` seconds. At most ``VERIFIED_MAX`` tokens are kept (then the memory starts over).

Failures raise ``Unauthenticated`` (``UNAUTHENTICATED``, 401) with a short reason — "token expired",
"bad signature", "wrong audience" — and never quote the token. An identity provider whose JWKS cannot be
fetched is not the caller's fault: that is ``UpstreamUnavailable`` (503, ``system="jwks"``)::

    authenticator = Authenticator(AuthConfig.from_settings(settings))
    principal = await authenticator.authenticate(request.headers.get("authorization"))
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import jwt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from canonical.errors import ConfigurationError, Unauthenticated, UpstreamUnavailable
from canonical.principal import ALL_ENTITIES, Principal, Role

if TYPE_CHECKING:
    from gateway.settings import Settings

AuthMode = Literal["hs256", "rs256"]

DEFAULT_AUDIENCE = "p2c-gateway"
DEFAULT_ISSUER = "p2c-dev"
# A JWT in a header has no business being larger; refusing early bounds the work an attacker can cause.
MAX_TOKEN_LENGTH = 8192
# HMAC-SHA256 keys shorter than the digest are brute-forceable (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32

_FAMILIES: dict[AuthMode, frozenset[str]] = {
    "hs256": frozenset({"HS256", "HS384", "HS512"}),
    "rs256": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
}
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
VERIFIED_TTL_S = 60.0
VERIFIED_MAX = 10_000
_SPACE = re.compile(r"\s")


class AuthConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: AuthMode = "hs256"
    secret: SecretStr | None = None
    jwks_url: str | None = None
    audience: str = DEFAULT_AUDIENCE
    issuer: str = DEFAULT_ISSUER
    leeway_s: float = Field(default=30, ge=0, le=300)
    roles_claim: str = "roles"
    entities_claim: str = "legal_entities"
    algorithms: tuple[str, ...] = Field(default=(), description="empty → HS256 or RS256 by mode")
    jwks_cache_s: float = Field(default=300, gt=0)
    jwks_timeout_s: float = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> AuthConfig:
        if not self.algorithms:
            object.__setattr__(self, "algorithms", ("HS256",) if self.mode == "hs256" else ("RS256",))
        # Mixing HMAC and public-key algorithms is the classic key-confusion hole (a public key used as
        # an HMAC secret), and "none" is no signature at all.
        foreign = [alg for alg in self.algorithms if alg not in _FAMILIES[self.mode]]
        if foreign:
            raise ValueError(f"algorithms {foreign} are not allowed in {self.mode} mode")
        if self.mode == "hs256":
            if self.secret is None:
                raise ValueError("hs256 needs a secret (P2C_JWT_SECRET)")
            if len(self.secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"the JWT secret (P2C_JWT_SECRET) must be at least {MIN_SECRET_BYTES} bytes")
        elif not self.jwks_url:
            raise ValueError("rs256 needs a JWKS URL (P2C_JWKS_URL)")
        elif not self.jwks_url.startswith(("https://", "http://")):
            raise ValueError("the JWKS URL must be http(s)")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        """RS256 when ``P2C_JWKS_URL`` is set, else HS256 with ``P2C_JWT_SECRET``."""
        values: dict[str, Any] = {
            "mode": "rs256" if settings.jwks_url else "hs256",
            "secret": settings.jwt_secret,
            "jwks_url": settings.jwks_url,
        }
        # Optional settings: read when present so this works before and after they are added.
        for name in ("audience", "issuer", "leeway_s"):
            value = getattr(settings, f"jwt_{name}", None)
            if value is not None:
                values[name] = value
        try:
            return cls(**values)
        except ValidationError as exc:
            reasons = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
            raise ConfigurationError(f"authentication settings: {reasons}") from None


class Authenticator:
    """Validates bearer tokens. One per process: it holds the JWKS cache."""

    def __init__(self, config: AuthConfig, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self.config = config
        self._secret: str | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if config.mode == "hs256" and config.secret is not None:
            self._secret = config.secret.get_secret_value()
        elif config.mode == "rs256" and config.jwks_url is not None:
            self._jwks = jwks_client or jwt.PyJWKClient(
                config.jwks_url,
                cache_jwk_set=True,
                lifespan=config.jwks_cache_s,
                timeout=config.jwks_timeout_s,
            )
        else:  # pragma: no cover - AuthConfig validates this; kept so a bypassed model fails loudly
            raise ConfigurationError(f"authentication: {config.mode} mode is missing its key source")
        self._verified: dict[str, tuple[float, Principal]] = {}  # token → (remembered until, principal)

    async def authenticate(self, authorization_header: str | None) -> Principal:
        token = bearer_token(authorization_header)
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if now < known[0]:
                return known[1]
            del self._verified[token]  # expired (or remembered long enough): verify it again
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in self.config.algorithms:
            raise _rejected("signing algorithm not allowed")
        key = await self._verification_key(header)
        claims = self._decode(token, key)
        principal = self._principal(claims)
        self._remember(token, claims, principal, now)
        return principal

    def _remember(self, token: str, claims: Mapping[str, Any], principal: Principal, now: float) -> None:
        # Verified at ``now``: not-before and issued-at only ever pass, so expiry alone ends its validity.
        expires = claims.get("exp")
        if not isinstance(expires, int | float):  # pragma: no cover - required and checked by PyJWT
            return
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (min(float(expires) + self.config.leeway_s, now + VERIFIED_TTL_S), principal)

    async def _verification_key(self, header: Mapping[str, Any]) -> Any:
        if self._jwks is None:
            return self._secret
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _rejected("token has no key id")
        try:
            # PyJWKClient fetches with blocking urllib: keep it off the event loop.
            signing_key = await asyncio.to_thread(_find_signing_key, self._jwks, kid)
        except jwt.PyJWKClientConnectionError as exc:
            raise UpstreamUnavailable("jwks", "signing keys could not be fetched") from exc
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise UpstreamUnavailable("jwks", "the key set holds no usable signing keys") from exc
        if signing_key is None:
            raise _rejected("unknown signing key")
        return signing_key.key

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise _rejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise _rejected("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise _rejected("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise _rejected("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _rejected(f"token has no '{exc.claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise _rejected("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise _rejected("signing algorithm not allowed") from None
        except jwt.InvalidIssuedAtError:
            raise _rejected("token issued in the future") from None
        except jwt.DecodeError:
            raise _rejected("malformed token") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError):
            # Deliberately vague: the remaining cases are all "not a token we issued".
            raise _rejected("invalid token") from None
        return claims

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _rejected("token has no subject")
        roles = _roles(claims.get(self.config.roles_claim), self.config.roles_claim)
        all_entities, entities = _entities(claims.get(self.config.entities_claim), self.config.entities_claim)
        token_id = claims.get("jti")
        return Principal(
            subject=subject,
            roles=roles,
            legal_entities=entities,
            all_entities=all_entities,
            token_id=token_id if isinstance(token_id, str) else None,
        )


def bearer_token(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``Unauthenticated``."""
    if authorization_header is None or not authorization_header.strip():
        raise _rejected("missing bearer token")
    scheme, _, credentials = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _rejected("authorization scheme must be Bearer")
    token = credentials.strip()
    if not token:
        raise _rejected("missing bearer token")
    if len(token) > MAX_TOKEN_LENGTH or _SPACE.search(token) is not None:
        raise _rejected("malformed token")
    return token


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _rejected("malformed token") from None


def _find_signing_key(client: jwt.PyJWKClient, kid: str) -> jwt.PyJWK | None:
    """The key for ``kid`` from the cached key set; on a miss, one refresh (PyJWKClient allows one per
    cooldown, so random kids cannot make us hammer the identity provider). None if still unknown."""
    found = client.match_kid(client.get_signing_keys(), kid)
    if found is not None:
        return found
    try:
        return client.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError:
        raise
    except jwt.PyJWKClientError:
        return None


def _roles(value: object, claim: str) -> frozenset[Role]:
    if value is None:
        return frozenset()
    # A space-separated string is how OAuth scopes travel; accept it alongside a JSON list.
    if isinstance(value, str):
        names: list[Any] = value.split()
    elif isinstance(value, list):
        names = value
    else:
        raise _rejected(f"malformed '{claim}' claim")
    roles: set[Role] = set()
    for name in names:
        if not isinstance(name, str):
            raise _rejected(f"malformed '{claim}' claim")
        try:
            roles.add(Role(name))
        except ValueError:
            raise _rejected(f"unknown role {_quoted(name)}") from None
    return frozenset(roles)


def _entities(value: object, claim: str) -> tuple[bool, frozenset[str]]:
    if value is None:
        return False, frozenset()
    if isinstance(value, str):
        codes: list[Any] = [value]
    elif isinstance(value, list):
        codes = value
    else:
        raise _rejected(f"malformed '{claim}' claim")
    if not all(isinstance(code, str) and code for code in codes):
        raise _rejected(f"malformed '{claim}' claim")
    if ALL_ENTITIES in codes:
        return True, frozenset()
    return False, frozenset(codes)


def _quoted(name: str) -> str:
    # The claim is signed, so it is the issuer's text, but keep an error message bounded anyway.
    return repr(name if len(name) <= 40 else name[:40] + "…")


def _rejected(reason: str) -> Unauthenticated:
    return Unauthenticated(reason)


def mint_dev_token(
    secret: str | SecretStr,
    subject: str,
    roles: Iterable[Role | str],
    entities: Iterable[str],
    ttl_s: float = 8 * 3600,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = DEFAULT_ISSUER,
    *,
    now: float | None = None,
) -> str:
    """An HS256 token the ``hs256`` authenticator accepts. ``entities=["*"]`` grants all of them.

    >>> token = mint_dev_token(secret, "ana", [Role.FINANCE], ["US01"], ttl_s=3600)
    """
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    role_names = sorted({str(Role(role)) for role in roles})  # ValueError on a name that is no role
    codes = sorted(set(entities))
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_s),
        "jti": uuid.uuid4().hex,
        "roles": role_names,
        "legal_entities": ALL_ENTITIES if ALL_ENTITIES in codes else codes,
    }
    return jwt.encode(claims, key, algorithm="HS256")


__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "AuthConfig",
    "AuthMode",
    "Authenticator",
    "bearer_token",
    "mint_dev_token",
]
