"""OAuth 2.0 machine-to-machine token endpoint of the sandbox.

Real NetSuite M2M signs the client assertion with a certificate's private key (PS256/RS256, ``kid`` = the
certificate id). The sandbox also accepts HS256 signed with the client secret, which needs no key pair;
RS256 is accepted when ``Rules.public_key_pem`` is set and ``cryptography`` is installed.
"""

from __future__ import annotations

import secrets
import time
import warnings
from urllib.parse import parse_qs

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse

from subgraphs.common.sandbox import SandboxOptions
from subgraphs.erp.sandbox.state import Store

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _refuse(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def token_endpoint(request: Request, store: Store, options: SandboxOptions) -> JSONResponse:
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    if form.get("grant_type") != "client_credentials":
        return _refuse("unsupported_grant_type", "grant_type must be client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        return _refuse("invalid_request", "client_assertion_type must be jwt-bearer")
    assertion = form.get("client_assertion", "")
    try:
        header = jwt.get_unverified_header(assertion)
        algorithm = header.get("alg")
        if algorithm == "HS256":
            key: str = options.client_secret
        elif algorithm in ("RS256", "PS256") and store.rules.public_key_pem:
            key = store.rules.public_key_pem
        else:
            raise jwt.InvalidAlgorithmError(f"unsupported alg {algorithm}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[str(algorithm)],
                options={"verify_aud": False, "require": ["exp", "iss"]},
            )
    except jwt.PyJWTError as exc:
        return _refuse("invalid_client", f"client assertion rejected: {exc}", 401)
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != options.client_id or not any(str(a).endswith(TOKEN_PATH) for a in audiences):
        return _refuse("invalid_client", "unknown client or wrong audience", 401)
    token = secrets.token_urlsafe(24)
    store.tokens[token] = time.monotonic() + options.token_ttl_s
    return JSONResponse({"access_token": token, "expires_in": options.token_ttl_s, "token_type": "Bearer"})


def token_valid(store: Store, authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    expiry = store.tokens.get(authorization[len("Bearer ") :])
    return expiry is not None and expiry > time.monotonic()
