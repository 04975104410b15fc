"""Prometheus metrics: route templates, exemplars, and exact counts across gunicorn workers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import gunicorn_server
from tests.jaeger import otlp_http_endpoint, require_jaeger, traceparent, wait_for_operations

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
USER_ROUTE = "/api/v1/users/{user_id}"
UNKNOWN_USER = "/api/v1/users/00000000-0000-0000-0000-000000000000"


def sample_value(exposition: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(exposition):  # type: ignore[no-untyped-call]
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                return float(sample.value)
    return 0.0


def exemplar_trace_ids(exposition: str, histogram: str, **labels: str) -> set[str]:
    found: set[str] = set()
    for family in text_string_to_metric_families(exposition):  # type: ignore[no-untyped-call]
        for sample in family.samples:
            matches = all(sample.labels.get(key) == value for key, value in labels.items())
            if sample.name == f"{histogram}_bucket" and sample.exemplar is not None and matches:
                found.add(sample.exemplar.labels["trace_id"])
    return found


async def test_requests_are_counted_by_route_template_with_trace_exemplars(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    """Exemplars point at recorded traces: this process records (``spans``), as a service exporting does."""
    before = (await client.get("/metrics", headers=OPENMETRICS)).text
    for _ in range(3):
        assert (await client.get(UNKNOWN_USER)).status_code == 404
    problem = (await client.get(UNKNOWN_USER)).json()
    assert (await client.get("/no/such/path/12345")).status_code == 404
    response = await client.get("/metrics", headers=OPENMETRICS)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    after = response.text
    labels = {"method": "GET", "handler": USER_ROUTE, "status": "404"}
    counted = sample_value(after, "app_http_requests_total", **labels) - sample_value(
        before, "app_http_requests_total", **labels
    )
    assert counted == 4
    assert "/api/v1/users/00000000" not in after  # never a raw path
    assert sample_value(after, "app_http_requests_total", method="GET", handler="none", status="404") >= 1
    assert problem["trace_id"] in exemplar_trace_ids(
        after, "app_http_request_duration_seconds", method="GET", handler=USER_ROUTE
    )
    assert sample_value(after, "app_mediator_requests_total", request_type="GetUser", outcome="rejected") >= 4
    plain = await client.get("/metrics")  # what a scraper that asks for nothing gets: Prometheus text
    assert plain.headers["content-type"].startswith("text/plain")


@pytest.fixture
def gunicorn(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """The API under gunicorn with 2 workers, exporting: exemplars point at recorded traces."""
    require_jaeger()
    with gunicorn_server(
        postgres_url,
        tmp_path,
        METRICS_SAMPLE_INTERVAL="0.2",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_http_endpoint(),
        OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="otel,process",  # process.pid tells the workers apart
    ) as url:
        yield url


def test_two_gunicorn_workers_count_exactly_and_keep_exemplars(gunicorn: str) -> None:
    requests = 300
    with httpx.Client(base_url=gunicorn, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for _ in range(requests):  # a new connection each: the kernel spreads them over both workers
            assert http.get(UNKNOWN_USER).status_code == 404
        time.sleep(1.2)  # the exemplar files are written at most once a second
        http.get(UNKNOWN_USER)
        exposition = http.get("/metrics", headers=OPENMETRICS).text
    labels = {"method": "GET", "handler": USER_ROUTE, "status": "404"}
    assert sample_value(exposition, "app_http_requests_total", **labels) == requests + 1
    assert sample_value(
        exposition, "app_mediator_requests_total", request_type="GetUser", outcome="rejected"
    ) == (requests + 1)
    pids = set(re.findall(r'app_process_resident_memory_bytes\{pid="(\d+)"\}', exposition))
    assert len(pids) == 2, f"expected both workers' gauges: {pids}"
    trace_ids = exemplar_trace_ids(
        exposition, "app_http_request_duration_seconds", method="GET", handler=USER_ROUTE
    )
    assert trace_ids, "no exemplar on the latency histogram"
    assert all(re.fullmatch(r"[0-9a-f]{32}", trace_id) for trace_id in trace_ids)


def test_both_gunicorn_workers_export_their_spans(gunicorn: str) -> None:
    """Each worker builds its tracer and fastotel's exporting thread after the fork: the traces
    of requests answered by both workers all reach the receiver."""
    sent = dict(traceparent() for _ in range(80))

    def get(headers: dict[str, str]) -> int:
        with httpx.Client(base_url=gunicorn) as http:  # a connection each, 16 at once: both workers answer
            return http.get(UNKNOWN_USER, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(get, sent.values())) == {404}
    pids = set()
    for trace_id in sent:
        trace = wait_for_operations(trace_id, {f"GET {USER_ROUTE}", "GetUser"}, timeout=30)
        pids |= {
            tag["value"]
            for process in trace["processes"].values()
            for tag in process["tags"]
            if tag["key"] == "process.pid"
        }
    assert len(pids) == 2, f"the traces came from {len(pids)} worker(s): {pids}"


async def test_a_made_up_method_counts_as_other(client: httpx.AsyncClient) -> None:
    assert (await client.request("BREW", "/no/such/pot")).status_code in {404, 405}
    exposition = (await client.get("/metrics", headers=OPENMETRICS)).text
    assert 'method="BREW"' not in exposition
    assert sample_value(exposition, "app_http_requests_total", method="other", handler="none") >= 1
