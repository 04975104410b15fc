"""The trace receiver goes away: requests do not notice, the process stays quiet, and spans flow
again once a receiver answers, whichever exporter sends them (fastotel's native thread or the
SDK's). The test runs a private Jaeger (scripts/jaeger.sh with its own JAEGER_HOME and ports) that
is down at first, so the shared one the other tests use is never touched."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, server_process
from tests.helpers import unique_email
from tests.jaeger import require_jaeger, traceparent, wait_for_operations


@contextmanager
def private_jaeger(home: Path, ports: dict[str, int]) -> Iterator[str]:
    """A Jaeger of this test's own on ``ports``; yields its query URL, stops it at the end."""
    env = {
        **os.environ,
        "JAEGER_HOME": str(home),
        **{name: str(port) for name, port in ports.items()},
    }
    script = str(ROOT / "scripts" / "jaeger.sh")
    try:  # `up` may fail after starting it: `down` runs whatever happened
        started = subprocess.run([script, "up"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"http://127.0.0.1:{ports['JAEGER_QUERY_PORT']}"
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("span_export", ["fastotel", "sdk"])
async def test_a_receiver_outage_costs_the_requests_nothing_and_spans_flow_when_it_returns(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, span_export: str
) -> None:
    await asyncio.to_thread(require_jaeger)  # the binary is built (the shared instance runs it)
    ports = {
        "JAEGER_OTLP_HTTP_PORT": free_port(),
        "JAEGER_OTLP_GRPC_PORT": free_port(),
        "JAEGER_QUERY_PORT": free_port(),
    }
    log = tmp_path / "api.log"
    with server_process(
        database,
        log,
        SPAN_EXPORT=span_export,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{ports['JAEGER_OTLP_HTTP_PORT']}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",  # a batch gives up within 2 s, retries included
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as (process, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            # Nothing listens where the spans go: every request is answered all the same.
            for number in range(15):
                registered = await http.post(
                    "/api/v1/users", json={"email": unique_email(f"outage{number}"), "name": "Untraced"}
                )
                assert registered.status_code == 201, registered.text
                read = await http.get(f"/api/v1/users/{registered.json()['id']}")
                assert read.status_code == 200, read.text
            await asyncio.sleep(2.5)  # batches were sent to nobody and given up on
            assert process.poll() is None
            assert "Traceback" not in log.read_text()

            with private_jaeger(tmp_path / "jaeger", ports) as query_url:
                monkeypatch.setenv("JAEGER_QUERY_URL", query_url)
                trace_id, headers = traceparent()
                body = {"email": unique_email("returned"), "name": "Traced"}
                registered = await http.post("/api/v1/users", json=body, headers=headers)
                assert registered.status_code == 201, registered.text
                # the assertion: the request's spans reach the receiver that came back
                await asyncio.to_thread(
                    wait_for_operations, trace_id, {"POST /api/v1/users", "RegisterUser"}, timeout=30
                )
