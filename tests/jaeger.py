"""Where the test suite finds Jaeger (scripts/jaeger.sh), and how it reads the traces Jaeger received.

Jaeger receives OTLP (gRPC on ``$JAEGER_OTLP_GRPC_PORT``, 4317; HTTP on ``$JAEGER_OTLP_HTTP_PORT``,
4318) and keeps the spans in memory; its query API (``JAEGER_QUERY_URL``, by default
``http://127.0.0.1:$JAEGER_QUERY_PORT``, 16686) answers with the JSON the Jaeger UI reads:

    GET /api/traces/{traceID}                       {"data": [trace]}, or 404 with "errors"
    GET /api/traces?service=&operation=&tags=&limit= {"data": [trace, ...]}
    GET /api/services                               {"data": ["service", ...]}

    trace = {"traceID": "<32 hex>", "spans": [span, ...], "processes": {"p1": process, ...}}
    span = {"traceID", "spanID": "<16 hex>", "operationName", "references": [{"refType": "CHILD_OF",
            "traceID", "spanID": "<the parent's>"}], "startTime": µs, "duration": µs,
            "tags": [{"key", "type": "string|int64|float64|bool", "value"}], "logs", "processID"}
    process = {"serviceName": "<the resource's service.name>", "tags": [the other resource attributes]}

The span's kind and status are tags too (``span.kind``: server, client, internal...;
``otel.status_code``: ERROR when set). The functions here block (httpx's synchronous client): an async
test calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx

from tests.services import missing

START_HINT = "start it with scripts/jaeger.sh up"


def jaeger_url() -> str:
    """The query API's base URL, without a trailing slash."""
    default = f"http://127.0.0.1:{os.environ.get('JAEGER_QUERY_PORT', '16686')}"
    return os.environ.get("JAEGER_QUERY_URL", default).rstrip("/")


def otlp_http_endpoint() -> str:
    """The OTLP/HTTP receiver's base URL (an ``OTEL_EXPORTER_OTLP_ENDPOINT``; traces go to
    ``/v1/traces`` under it)."""
    return f"http://127.0.0.1:{os.environ.get('JAEGER_OTLP_HTTP_PORT', '4318')}"


def otlp_grpc_endpoint() -> str:
    """The OTLP/gRPC receiver's address (``OTEL_EXPORTER_OTLP_ENDPOINT`` with the gRPC exporter)."""
    return f"http://127.0.0.1:{os.environ.get('JAEGER_OTLP_GRPC_PORT', '4317')}"


def require_jaeger(timeout: float = 3.0) -> str:
    """The query API's base URL when Jaeger answers; otherwise skip (or fail with REQUIRE_SERVICES=1)."""
    url = jaeger_url()
    try:
        response = httpx.get(f"{url}/api/services", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as error:
        missing("Jaeger", f"{url}: {str(error) or type(error).__name__}; {START_HINT}")
    return url


def hex_trace_id(trace_id: int) -> str:
    """An OpenTelemetry trace id (``span.get_span_context().trace_id``) as Jaeger writes it."""
    return format(trace_id, "032x")


def traceparent() -> tuple[str, dict[str, str]]:
    """A new sampled trace's id (as Jaeger writes it) and the ``traceparent`` header starting it."""
    trace_id = f"{secrets.randbits(128) | 1:032x}"
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.randbits(64) | 1:016x}-01"}


def wait_for_trace(trace_id: str, *, min_spans: int = 1, timeout: float = 30) -> dict[str, Any]:
    """The trace (Jaeger's JSON, see above) once Jaeger holds at least ``min_spans`` of its spans;
    AssertionError after ``timeout`` seconds."""
    trace_id = trace_id.lower()
    deadline = time.monotonic() + timeout
    seen = "no span"
    with httpx.Client(base_url=jaeger_url(), timeout=5) as client:
        while True:
            response = client.get(f"/api/traces/{trace_id}")
            if response.status_code != httpx.codes.NOT_FOUND:
                response.raise_for_status()
                traces: list[dict[str, Any]] = response.json()["data"] or []
                if traces:
                    trace = traces[0]
                    if len(trace["spans"]) >= min_spans:
                        return trace
                    seen = f"{len(trace['spans'])} span(s): {sorted(operations(trace))}"
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"Jaeger ({jaeger_url()}) holds {seen} of trace {trace_id} after {timeout} s, "
                    f"expected at least {min_spans}"
                )
            time.sleep(0.1)


def wait_for_operations(trace_id: str, names: set[str], timeout: float = 60.0) -> dict[str, Any]:
    """The trace once Jaeger holds spans of every one of ``names``; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    with httpx.Client(base_url=jaeger_url(), timeout=5) as client:
        while True:
            response = client.get(f"/api/traces/{trace_id}")
            if response.status_code == 200 and response.json()["data"]:
                trace: dict[str, Any] = response.json()["data"][0]
                seen = operations(trace)
                if names <= set(seen):
                    return trace
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"trace {trace_id}: {sorted(names - set(seen))} missing from {sorted(seen)}"
                )
            time.sleep(0.2)


def find_traces(
    service: str,
    operation: str | None = None,
    limit: int = 20,
    *,
    tags: Mapping[str, str] | None = None,
    lookback: str = "1h",
) -> list[dict[str, Any]]:
    """The traces (Jaeger's JSON, see above) with a span of ``service`` (the resource's
    ``service.name``), of ``operation`` and with all of ``tags`` when given, newest first; each one
    whole, its other spans included. Empty when there is none."""
    params: dict[str, str | int] = {"service": service, "limit": limit, "lookback": lookback}
    if operation is not None:
        params["operation"] = operation
    if tags:
        params["tags"] = json.dumps(dict(tags))
    response = httpx.get(f"{jaeger_url()}/api/traces", params=params, timeout=10)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["data"] or []
    return found


def operations(trace: Mapping[str, Any]) -> list[str]:
    """The trace's span names, in Jaeger's order."""
    return [span["operationName"] for span in trace["spans"]]


def span_named(trace: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """The trace's one span named ``operation`` (AssertionError when there is none or several)."""
    spans = [span for span in trace["spans"] if span["operationName"] == operation]
    assert len(spans) == 1, f"{len(spans)} span(s) named {operation!r} in {sorted(operations(trace))}"
    span: dict[str, Any] = spans[0]
    return span


def parent_span_id(span: Mapping[str, Any]) -> str | None:
    """The span id of the span's parent (its CHILD_OF reference), None for a root span."""
    for reference in span["references"] or []:
        if reference["refType"] == "CHILD_OF":
            parent: str = reference["spanID"]
            return parent
    return None


def service_name(trace: Mapping[str, Any], span: Mapping[str, Any]) -> str:
    """The ``service.name`` of the process (the OpenTelemetry resource) that sent the span."""
    name: str = trace["processes"][span["processID"]]["serviceName"]
    return name


def tags(item: Mapping[str, Any]) -> dict[str, Any]:
    """A span's (or a process's) tags as a dict: the attributes, with their types (int64 an int)."""
    return {tag["key"]: tag["value"] for tag in item["tags"] or []}
