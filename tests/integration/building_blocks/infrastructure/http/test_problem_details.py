"""The service side of an open circuit: an endpoint whose target's breaker is open answers 503
``application/problem+json`` with ``Retry-After`` (the API's exception handlers), at once and
without calling the target."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from app.building_blocks.api.exceptions import setup_exception_handlers
from app.building_blocks.api.problem_details import PROBLEM_JSON
from app.building_blocks.infrastructure.http import CircuitBreakerConfig, CircuitState, HttpClient, NoRetry
from tests.http_servers import Reply, ScriptedServer
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient, state_of


def service_calling(billing: HttpClient) -> FastAPI:
    """A small service whose endpoint calls the billing API."""
    app = FastAPI()
    setup_exception_handlers(app, log_errors=False)

    @app.get("/invoices/{invoice_id}")
    async def invoice(invoice_id: int) -> object:
        response = await billing.get(f"/invoices/{invoice_id}")
        return response.json()

    return app


async def test_an_open_circuit_is_a_503_problem_with_retry_after(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    billing = make_client(
        name="billing",
        retry_policy=NoRetry(),
        circuit_breaker=CircuitBreakerConfig(failure_threshold=2, open_seconds=30),
    )
    server.always("/invoices/1", Reply(500, {"error": "boom"}))
    app = service_calling(billing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as caller:
        for _ in range(2):  # the target fails twice: the breaker opens
            await caller.get("/invoices/1")
        assert state_of(billing) is CircuitState.OPEN

        started = time.monotonic()
        response = await caller.get("/invoices/1")
        elapsed = time.monotonic() - started

    assert server.count("/invoices/1") == 2  # the third call never left the service
    assert elapsed < 0.5
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    retry_after = int(response.headers["retry-after"])
    assert 25 <= retry_after <= 30
    problem = response.json()
    assert problem["status"] == 503
    assert problem["title"] == "Service Unavailable"
    assert problem["extensions"] == {"error_code": "TEMPORARILY_UNAVAILABLE", "retry_after": retry_after}
    assert problem["instance"] == "/invoices/1"
    assert "billing" in problem["detail"]
