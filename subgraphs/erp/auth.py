"""OAuth 2.0 machine-to-machine for NetSuite as an ``httpx.Auth`` flow.

The client assertion is a JWT (iss = client id, aud = token URL, short exp). Real NetSuite wants it signed
with a certificate key (PS256/RS256 and ``kid``); with only a client secret configured we sign HS256, which
the sandbox accepts. The access token is cached and refreshed once when a request comes back 401.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from collections.abc import AsyncGenerator, Generator

import httpx
import jwt

from subgraphs.common.transport import IDEMPOTENT
from subgraphs.erp.config import ErpConfig
from subgraphs.erp.errors import from_response

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Renew this long before the vendor's expiry, so a token never dies between check and use.
EARLY_RENEWAL_S = 30.0


class M2MAuth(httpx.Auth):
    def __init__(self, token_client: httpx.AsyncClient, config: ErpConfig) -> None:
        self._http = token_client
        self._config = config
        self._token_url = str(token_client.base_url.join(config.token_path))
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._config.client_id,
            "aud": self._token_url,
            "iat": now,
            "exp": now + self._config.token_lifetime_s,
            "jti": str(uuid.uuid4()),
            "scope": ["rest_webservices"],
        }
        with warnings.catch_warnings():
            # The demo secret is shorter than RFC 7518's 32 bytes; a real deployment signs with a key pair.
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(
                claims,
                self._config.client_secret.get_secret_value(),
                algorithm="HS256",
                headers={"kid": self._config.account_id},
            )

    async def token(self, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` names one the vendor refused, so concurrent 401s refresh only once."""
        async with self._lock:
            fresh = self._token is not None and self._token != stale and time.monotonic() < self._expires
            if fresh and self._token is not None:
                return self._token
            request = self._http.build_request(
                "POST",
                self._config.token_path,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": self.assertion(),
                },
            )
            request.extensions[IDEMPOTENT] = True
            response = await self._http.send(request)
            self.fetches += 1
            if response.status_code != 200:
                raise from_response(response)
            body = response.json()
            self._token = str(body["access_token"])
            ttl = float(body.get("expires_in", 3600))
            self._expires = time.monotonic() + ttl - min(EARLY_RENEWAL_S, ttl / 10)
            return self._token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("M2MAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            request.headers["Authorization"] = f"Bearer {await self.token(stale=token)}"
            yield request
