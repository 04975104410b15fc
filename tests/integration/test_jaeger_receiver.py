"""The trace receiver the tests query (scripts/jaeger.sh): a span sent over OTLP/HTTP by the
OpenTelemetry SDK is found through Jaeger's query API, by its trace id and by its service.
Starts nothing: skipped when Jaeger does not answer (a failure with REQUIRE_SERVICES=1)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.jaeger import (
    find_traces,
    hex_trace_id,
    otlp_http_endpoint,
    parent_span_id,
    require_jaeger,
    service_name,
    span_named,
    tags,
    wait_for_trace,
)


@pytest.fixture(scope="module")
def jaeger() -> str:
    return require_jaeger()


def test_a_span_sent_over_otlp_http_is_found_by_trace_id_and_by_service(jaeger: str) -> None:
    service = f"jaeger-receiver-test-{uuid.uuid4().hex[:12]}"
    # A provider of the test's own, not the global one the application may have set.
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_http_endpoint()}/v1/traces"))
    )
    tracer = provider.get_tracer("tests.jaeger")
    try:
        with (
            tracer.start_as_current_span(
                "GET /probe",
                kind=SpanKind.SERVER,
                attributes={"http.route": "/probe", "http.status_code": 200},
            ) as parent,
            tracer.start_as_current_span("load probe", attributes={"probe.rows": 3}) as child,
        ):
            child.set_status(Status(StatusCode.ERROR, "no rows"))
        assert provider.force_flush(timeout_millis=10_000)
    finally:
        provider.shutdown()
    trace_id = hex_trace_id(parent.get_span_context().trace_id)
    parent_id = format(parent.get_span_context().span_id, "016x")

    trace = wait_for_trace(trace_id, min_spans=2, timeout=20)

    assert trace["traceID"] == trace_id
    server, loader = span_named(trace, "GET /probe"), span_named(trace, "load probe")
    assert server["spanID"] == parent_id
    assert parent_span_id(server) is None
    assert parent_span_id(loader) == parent_id
    assert loader["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent_id}]
    assert service_name(trace, server) == service_name(trace, loader) == service
    assert tags(trace["processes"][server["processID"]])["deployment.environment"] == "test"
    assert (
        tags(server).items()
        >= {"http.route": "/probe", "http.status_code": 200, "span.kind": "server"}.items()
    )
    assert (
        tags(loader).items()
        >= {"probe.rows": 3, "span.kind": "internal", "otel.status_code": "ERROR"}.items()
    )

    found = find_traces(service, operation="load probe")
    assert [each["traceID"] for each in found] == [trace_id]
    assert [each["traceID"] for each in find_traces(service, tags={"http.route": "/probe"})] == [trace_id]
    assert find_traces(service, operation="no such operation") == []


def test_waiting_for_a_trace_jaeger_never_received_fails_with_what_it_holds(jaeger: str) -> None:
    with pytest.raises(AssertionError, match=r"holds no span of trace 0+1 after 0\.3 s"):
        wait_for_trace(hex_trace_id(1), timeout=0.3)
