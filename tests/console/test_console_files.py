"""How the gateway serves the ops console's files (no browser needed): the mount, the security headers, only
the listed files, and the rules that keep the page offline and free of inline script."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources

import httpx
import pytest

from gateway.app import create_app
from gateway.console import CONTENT_SECURITY_POLICY, FILES
from gateway.settings import load_settings


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The console's routes need no runtime: no lifespan, so no store and no sandboxes are started.
    app = create_app(load_settings(demo_accounts=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
        yield c


def source(name: str) -> str:
    return resources.files("gateway.console").joinpath(name).read_text()


async def test_console_redirects_and_serves_the_page_with_security_headers(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/console")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"

    page = await client.get("/console/")

    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>P2C ops console</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-cache"

    again = await client.get("/console/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_every_listed_file_is_served_with_its_type_and_nothing_else(client: httpx.AsyncClient) -> None:
    for name, media_type in FILES.items():
        response = await client.get(f"/console/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.text == source(name)
    for name in ("__init__.py", "missing.js", "..%2Fapp.py", "index.htm"):
        refused = await client.get(f"/console/{name}")
        assert refused.status_code == 404, name
        assert refused.json()["error"]["code"] == "NOT_FOUND"
    assert (await client.post("/console/", content=b"x")).status_code == 405


def test_every_module_the_page_imports_is_served() -> None:
    """A module imported but missing from FILES would be a 404 in the browser, and a blank console."""
    wanted = {"console.js"}
    for name in [n for n in FILES if n.endswith(".js")]:
        wanted |= set(re.findall(r'from "\./([\w-]+\.js)"', source(name)))
    wanted |= set(re.findall(r'(?:src|href)="([\w-]+\.(?:js|css))"', source("index.html")))
    assert wanted <= set(FILES)


def test_the_page_has_no_inline_script_no_external_asset_and_no_html_injection() -> None:
    html = source("index.html")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # CSP forbids inline script anyway
    assert re.findall(r"\son\w+=", html) == [] and " style=" not in html
    for name in FILES:
        text = source(name)
        assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text) == [], name  # offline: no CDN
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, name  # server data as text only
        assert "eval(" not in text and "new Function" not in text, name
