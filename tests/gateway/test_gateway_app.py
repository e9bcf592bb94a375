from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canonical.errors import NotFound
from gateway.app import create_app
from gateway.correlation import HEADER
from gateway.settings import Settings


async def test_healthz(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_not_found_is_json(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["message"] == "not found"


async def test_method_not_allowed_is_json_with_allow(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["allow"]


async def _boom(request: Request) -> Response:
    raise RuntimeError("database password is hunter2")


async def _missing(request: Request) -> Response:
    raise NotFound("Project", "P-17")


async def test_unexpected_error_is_masked(settings: Settings, serve: Any) -> None:
    app = create_app(settings)
    app.router.routes.append(Route("/boom", _boom))
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: Starlette re-raises after answering, as servers expect.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get("/boom", headers={HEADER: "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL", "message": "internal error", "correlationId": "boom-1"}
    }
    assert response.headers[HEADER] == "boom-1"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_gateway_error_keeps_its_status_and_code(settings: Settings, serve: Any) -> None:
    app = create_app(settings)
    app.router.routes.append(Route("/missing", _missing))
    async with serve(app) as client:
        response = await client.get("/missing")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["message"] == "Project P-17 not found"
    assert error["kind"] == "Project"
    assert error["correlationId"] == response.headers[HEADER]


async def test_graphiql_is_served_in_development(settings: Settings, serve: Any) -> None:
    # Executing queries needs a token: tests/gateway/test_graphql_endpoint.py covers that.
    async with serve(create_app(settings)) as client:
        ide = await client.get("/graphql", headers={"accept": "text/html"})
    assert ide.status_code == 200
    assert "graphiql" in ide.text.lower()


async def test_metrics_count_requests_by_route_template(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        await client.get("/healthz")
        await client.get("/healthz")
        await client.get("/unknown/123")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE p2c_http_requests_total counter" in text
    assert re.search(r'p2c_http_requests_total\{method="GET",route="/healthz",status="200"\} 2\.0', text)
    assert re.search(r'p2c_http_requests_total\{method="GET",route="<unmatched>",status="404"\} 1\.0', text)
    assert "p2c_http_request_duration_seconds_bucket" in text
    assert "/unknown/123" not in text


async def test_each_app_has_its_own_registry(settings: Settings, serve: Any) -> None:
    first, second = create_app(settings), create_app(settings)
    async with serve(first) as client:
        await client.get("/healthz")
    async with serve(second) as client:
        text = (await client.get("/metrics")).text
    assert 'route="/healthz"' not in text


async def test_sandbox_mount_without_sandbox_is_a_clean_404(settings: Settings, serve: Any) -> None:
    external = settings.model_copy(
        update={"crm": settings.crm.model_copy(update={"base_url": "http://127.0.0.1:9"})}
    )
    async with serve(create_app(external)) as client:
        response = await client.get("/sandbox/crm/anything")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "crm is not served by an in-process sandbox"
