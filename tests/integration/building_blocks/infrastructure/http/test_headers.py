"""The headers every call carries, as the server receives them: X-Correlation-Id (given, else
the current one, else new; the same on every retry of a call), X-Consumer-Id, the configured
defaults, and the W3C ``traceparent``.

``traceparent`` is injected by the OpenTelemetry httpx instrumentation only when a tracer provider
is installed (with none, the API's no-op span has no valid context to send): the tests of it
install the service's provider with ``configure_tracing`` (process-wide and idempotent, as
tests/integration/observability/conftest.py does). Even without an exporter that provider gives
every span valid W3C ids (non-recording), so the header is there in either case.
"""

from __future__ import annotations

import re
import uuid

import pytest
from opentelemetry import trace

from app.building_blocks.correlation import reset_correlation_id, set_correlation_id
from app.building_blocks.observability.tracing import configure_tracing
from tests.http_servers import Reply, ScriptedServer
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient

TRACEPARENT = re.compile(r"00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}")


@pytest.fixture
def tracing() -> None:
    configure_tracing(service_name="user-service")


async def test_an_explicit_correlation_id_is_sent(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/x", Reply(200))
    token = set_correlation_id("from-the-request")
    try:
        await make_client().get("/x", correlation_id="given-explicitly")
    finally:
        reset_correlation_id(token)
    assert server.received("/x")[0].headers["x-correlation-id"] == "given-explicitly"


async def test_the_current_correlation_id_is_sent(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/x", Reply(200))
    token = set_correlation_id("from-the-request")
    try:
        await make_client().get("/x")
    finally:
        reset_correlation_id(token)
    assert server.received("/x")[0].headers["x-correlation-id"] == "from-the-request"


async def test_a_header_the_caller_set_is_kept(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/x", Reply(200))
    await make_client().get("/x", headers={"X-Correlation-Id": "in-the-headers"}, correlation_id="ignored")
    assert server.received("/x")[0].headers["x-correlation-id"] == "in-the-headers"


async def test_without_one_a_new_id_is_the_same_on_every_retry_of_a_call(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/x", Reply(503), Reply(502), Reply(200))
    server.always("/y", Reply(200))
    client = make_client()
    await client.get("/x")
    await client.get("/y")

    ids = [request.headers["x-correlation-id"] for request in server.received("/x")]
    assert len(ids) == 3
    assert len(set(ids)) == 1
    assert uuid.UUID(ids[0]).version == 4
    assert server.received("/y")[0].headers["x-correlation-id"] != ids[0]  # another call, another id


async def test_the_consumer_id_and_the_configured_headers_are_sent(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.always("/x", Reply(200))
    await make_client(consumer_id="user-service", headers={"Accept": "application/json"}).get("/x")
    await make_client().get("/x")
    configured, plain = server.received("/x")
    assert configured.headers["x-consumer-id"] == "user-service"
    assert configured.headers["accept"] == "application/json"
    assert "x-consumer-id" not in plain.headers


async def test_every_attempt_carries_the_callers_trace_context(
    server: ScriptedServer, make_client: MakeClient, tracing: None
) -> None:
    """Spans not recorded (the lean default): the client is not instrumented and each attempt
    carries the current span's ``traceparent`` (the request or message being handled), so the
    receiver joins that trace; a call made outside any span sends none."""
    server.reply("/x", Reply(503), Reply(200))
    with trace.get_tracer("test").start_as_current_span("handling a request") as parent:
        await make_client().get("/x")
    context = parent.get_span_context()
    matches = [TRACEPARENT.fullmatch(request.headers["traceparent"]) for request in server.received("/x")]
    assert len(matches) == 2
    assert all(match is not None for match in matches)
    assert {(match["trace"], match["span"]) for match in matches if match} == {
        (format(context.trace_id, "032x"), format(context.span_id, "016x"))
    }
    server.always("/y", Reply(200))
    await make_client().get("/y")
    assert "traceparent" not in server.received("/y")[0].headers
