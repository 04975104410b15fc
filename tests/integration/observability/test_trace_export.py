"""One registration, one trace in a real receiver: the API and the worker export over OTLP to
Jaeger, and the trace holds the request, the command, its SQL, the relay's publish (in the worker)
and the consumer's span; the request's log lines and a failing request's ProblemDetails carry the
trace's id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import server_process
from tests.helpers import unique_email
from tests.jaeger import (
    find_traces,
    operations,
    otlp_http_endpoint,
    parent_span_id,
    require_jaeger,
    service_name,
    tags,
    traceparent,
    wait_for_operations,
)
from tests.messaging_harness import settings_for, worker


def log_lines(path: Path, trace_id: str) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("trace_id") == trace_id:
                lines.append(record)
    return lines


async def test_a_registration_is_one_trace_across_the_api_the_outbox_and_the_worker(
    database: str, bootstrap: str, topic: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(require_jaeger)
    settings = settings_for(database, bootstrap, topic)
    export = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_http_endpoint(),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a fraction of a second
        "WORKER_METRICS_PORT": "0",
    }
    api_log = tmp_path / "api.log"
    api_env = {
        **export,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOPIC_OVERRIDES": json.dumps({"user": topic}),
        "LOG_LEVEL": "DEBUG",  # the mediator's line for a handled request is a DEBUG line
    }
    with (
        worker(settings, tmp_path / "worker.log", **export),
        server_process(database, api_log, **api_env) as (_process, url),
    ):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            trace_id, headers = traceparent()
            registered = await http.post(
                "/api/v1/users", json={"email": unique_email("jaeger"), "name": "Traced"}, headers=headers
            )
            assert registered.status_code == 201, registered.text
            failing_id, failing_headers = traceparent()
            missing_user = await http.get(
                "/api/v1/users/00000000-0000-0000-0000-000000000000", headers=failing_headers
            )
            assert missing_user.status_code == 404
            assert missing_user.json()["trace_id"] == failing_id
        publish, consume = f"{topic} publish", f"{topic} process"
        trace = await asyncio.to_thread(
            wait_for_operations, trace_id, {"POST /api/v1/users", "RegisterUser", publish, consume}
        )
    spans = {span["operationName"]: span for span in trace["spans"]}
    server, command = spans["POST /api/v1/users"], spans["RegisterUser"]
    assert service_name(trace, server) == "user-service"
    assert parent_span_id(command) == server["spanID"]
    inserts = [
        span for span in trace["spans"] if "INSERT INTO users" in str(tags(span).get("db.statement", ""))
    ]
    assert inserts, f"no SQL span of the registration in {sorted(operations(trace))}"
    assert parent_span_id(inserts[0]) == command["spanID"]
    assert service_name(trace, spans[publish]) == "user-service-worker"
    assert tags(spans[publish])["span.kind"] == "producer"
    assert service_name(trace, spans[consume]) == "user-service-worker"
    assert parent_span_id(spans[consume]) == spans[publish]["spanID"]
    assert tags(spans[consume])["messaging.outcome"] == "handled"
    # The worker's housekeeping (claims, marking rows published, purges, the gauges' queries) is
    # not exported: each of its traces is a message's, with a publish or process span in it.
    worker_traces = await asyncio.to_thread(find_traces, "user-service-worker", limit=200, lookback="10m")
    assert worker_traces
    for found in worker_traces:
        names = operations(found)
        assert any(name.endswith((" publish", " process")) for name in names), names
    assert any(line["message"].startswith("RegisterUser handled") for line in log_lines(api_log, trace_id))
    assert any("rejected" in line["message"] for line in log_lines(api_log, failing_id))
