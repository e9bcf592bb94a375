"""The ops console at ``/console``: plain HTML, CSS and vanilla JavaScript served from this package.

    app.routes.extend(console_routes())      # /console → /console/, /console/<file>

No build step and nothing fetched from elsewhere: the page works offline on a fresh clone. It holds no
data and no secret — the person pastes a bearer token, the page keeps it in ``sessionStorage`` and sends
it as ``Authorization`` on every call to ``/graphql``, the only API it uses. So serving the files needs
no login; every figure on the page does, and every action is role-checked and audited by the graph.

Only the files in ``FILES`` are served (never this module or its bytecode), from memory, with:

- ``Content-Security-Policy``: scripts and styles from this origin only, no inline script or style,
  connections only back to the gateway, no framing, no forms posting elsewhere;
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``;
- ``Cache-Control: no-cache`` with an ``ETag``: a browser revalidates, so a new gateway's console is
  picked up at once, and an unchanged file costs a 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

#: file name → media type; nothing else under the package is ever served.
FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "graph.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "overview.js": "text/javascript; charset=utf-8",
    "exceptions.js": "text/javascript; charset=utf-8",
    "runs.js": "text/javascript; charset=utf-8",
    "reports.js": "text/javascript; charset=utf-8",
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    package = resources.files(__name__)
    assets: dict[str, Asset] = {}
    for name, media_type in FILES.items():
        body = package.joinpath(name).read_bytes()
        assets[name] = Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


def _not_found(path: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "NOT_FOUND", "message": f"no console file {path!r}"}},
        status_code=404,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


def console_routes() -> list[BaseRoute]:
    """``/console`` (redirect), ``/console/`` (the page) and ``/console/<file>``; GET and HEAD only."""
    assets = load_assets()  # read once: a few tens of KB

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=308)

    async def serve(request: Request) -> Response:
        name = request.path_params.get("name") or "index.html"
        asset = assets.get(name)
        if asset is None:
            return _not_found(name)
        headers = {**SECURITY_HEADERS, "ETag": asset.etag}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    methods = ["GET", "HEAD"]
    return [
        Route("/console", redirect, methods=methods),
        Route("/console/", serve, methods=methods),
        Route("/console/{name:str}", serve, methods=methods),
    ]


__all__ = ["CONTENT_SECURITY_POLICY", "FILES", "SECURITY_HEADERS", "console_routes", "load_assets"]
