"""One trace from the HTTP request through the outbox to the consumer, in process (both backends).

The request carries a W3C ``traceparent``, so its trace id is known; the server span continues it,
the mediator's span and the SQL are its children, the outbox row keeps its context, and the
relay's publish span and the consumer's span continue that trace, not the relay's loop.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.main import create_app
from app.settings import RedisSettings
from tests.conftest import make_settings
from tests.helpers import unique_email
from tests.integration.observability.conftest import spans_of, wait_for_spans
from tests.redis_service import unique_prefix

TOPIC = "user-service.users.v1"


@pytest.fixture(scope="module")
async def client(private_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app on a database of this module's own: the embedded relay that publishes the row must be
    this process's (a server another test started on a shared database could lead instead)."""
    app = create_app(make_settings(private_database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield http


def traceparent() -> tuple[int, dict[str, str]]:
    trace_id = secrets.randbits(128) | 1
    return trace_id, {"traceparent": f"00-{trace_id:032x}-{secrets.randbits(64) | 1:016x}-01"}


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.name == name]
    assert matching, f"no span {name!r} in {sorted(span.name for span in spans)}"
    return matching[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_holds_request_command_sql_publish_and_consume(
    client: httpx.AsyncClient, spans: InMemorySpanExporter, private_database_url: str
) -> None:
    trace_id, headers = traceparent()
    response = await client.post(
        "/api/v1/users", json={"email": unique_email("traced"), "name": "Traced"}, headers=headers
    )
    assert response.status_code == 201, response.text
    found = await asyncio.to_thread(
        wait_for_spans,
        spans,
        trace_id,
        "POST /api/v1/users",
        "RegisterUser",
        f"{TOPIC} publish",
        f"{TOPIC} process",
    )
    server = by_name(found, "POST /api/v1/users")
    command = by_name(found, "RegisterUser")
    publish = by_name(found, f"{TOPIC} publish")
    consume = by_name(found, f"{TOPIC} process")
    assert server.kind is SpanKind.SERVER
    assert parent_of(command) == server.context.span_id
    assert command.attributes is not None
    assert command.attributes["mediator.outcome"] == "success"
    # The relay's span continues the command's trace, under the span that wrote the row.
    assert publish.kind is SpanKind.PRODUCER
    assert parent_of(publish) in {span.context.span_id for span in found if span is not publish}
    assert consume.kind is SpanKind.CONSUMER
    assert parent_of(consume) == publish.context.span_id
    assert consume.attributes is not None
    assert consume.attributes["messaging.outcome"] == "handled"
    if private_database_url.startswith("postgresql"):
        sql = [span for span in found if span.kind is SpanKind.CLIENT and span.attributes]
        assert any(parent_of(span) == command.context.span_id for span in sql), "no SQL under the command"
        # The projection's SQL belongs to the consumer's span.
        assert any(parent_of(span) == consume.context.span_id for span in sql), "no SQL under the consumer"


async def test_a_failing_request_reports_its_trace_id(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    trace_id, headers = traceparent()
    response = await client.get("/api/v1/users/00000000-0000-0000-0000-000000000000", headers=headers)
    assert response.status_code == 404
    assert response.json()["trace_id"] == f"{trace_id:032x}"
    found = await asyncio.to_thread(wait_for_spans, spans, trace_id, "GetUser")
    query = by_name(found, "GetUser")
    assert query.attributes is not None
    assert query.attributes["mediator.outcome"] == "rejected"
    assert query.attributes["mediator.error_code"] == "USER_NOT_FOUND"
    assert query.status.status_code is StatusCode.UNSET  # a business answer, not the system's failure


async def test_probes_and_scrapes_are_not_traced(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    trace_id, headers = traceparent()
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await client.get(path, headers=headers)).status_code == 200
    await asyncio.sleep(0.2)
    assert spans_of(spans, trace_id) == []


async def test_a_cached_read_shows_its_redis_call_and_no_sql(
    spans: InMemorySpanExporter, postgres_url: str, redis_url: str
) -> None:
    """With spans recorded, Redis is instrumented like the database: a miss holds the cache read,
    the SQL and the fill; a hit holds the cache read alone, under the query's span."""
    settings = make_settings(postgres_url, redis=RedisSettings(url=redis_url, key_prefix=unique_prefix()))
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        created = await http.post("/api/v1/users", json={"email": unique_email("cached"), "name": "C"})
        path = created.headers["location"]
        traces = []
        for _ in range(2):  # a miss, then a hit
            trace_id, headers = traceparent()
            assert (await http.get(path, headers=headers)).status_code == 200
            traces.append(await asyncio.to_thread(wait_for_spans, spans, trace_id, "GetUser", "MGET"))
    miss, hit = traces
    for found in (miss, hit):
        query, read = by_name(found, "GetUser"), by_name(found, "MGET")
        assert read.kind is SpanKind.CLIENT
        assert read.attributes is not None
        assert read.attributes["db.system"] == "redis"
        assert parent_of(read) == query.context.span_id
    sql = [span for span in miss if span.attributes and span.attributes.get("db.system") == "postgresql"]
    assert sql, "the miss read the database"
    assert "EVALSHA" in {span.name for span in miss}  # the guarded fill
    assert not [span for span in hit if span.attributes and span.attributes.get("db.system") == "postgresql"]
    assert "EVALSHA" not in {span.name for span in hit}


async def test_an_outbound_call_is_a_client_span_of_its_caller_with_no_secret_in_its_url(
    spans: InMemorySpanExporter,
) -> None:
    """With spans recorded, HttpClient is instrumented: each attempt a CLIENT span under the
    caller's, its traceparent sent, its URL shown as the logs show it (secret values redacted)."""
    from opentelemetry import trace

    from app.building_blocks.infrastructure.http import (
        ApiKeyAuth,
        CircuitBreakers,
        HttpClient,
        HttpClientConfig,
    )
    from tests.http_servers import Reply, ScriptedServer

    async with ScriptedServer() as server:
        server.reply("/partner", Reply(503), Reply(200))
        config = HttpClientConfig(base_url=server.url, auth_strategy=ApiKeyAuth("k-SECRET", query_param="k"))
        with trace.get_tracer("test").start_as_current_span("handling") as parent:
            async with HttpClient(config, breakers=CircuitBreakers()) as client:
                assert (await client.get("/partner", params={"page": 2})).status_code == 200
        received = server.received("/partner")
    trace_id = parent.get_span_context().trace_id
    calls = [span for span in spans_of(spans, trace_id) if span.kind is SpanKind.CLIENT]
    assert len(calls) == 2  # one per attempt
    assert all(parent_of(span) == parent.get_span_context().span_id for span in calls)
    for span, request in zip(calls, received, strict=True):
        assert request.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
        urls = [value for key, value in (span.attributes or {}).items() if key in ("url.full", "http.url")]
        assert urls
        assert all("k-SECRET" not in str(url) and "page=2" in str(url) for url in urls)
