"""The relay benchmark (bench/relay_throughput.py) still runs end to end, on tiny sizes.

Only behaviour is asserted: every event is published and acked, each figure is measured, the
summary has its lines and the database is dropped. Speed is what the benchmark reports, never
what a test checks.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy.engine import make_url

from app.building_blocks.infrastructure.messaging.config import OutboxConfig
from bench.relay_throughput import (
    amain,
    database_exists,
    parse_args,
    run_benchmark,
    summary_lines,
)
from tests.kafka_service import require_kafka
from tests.services import create_postgres_database, drop_postgres_database, postgres_admin_url

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SUMMARY_KEYS = [
    "relay_throughput_eps",
    "raw_producer_eps",
    "ratio",
    "ratios",
    "relay_cpu_s",
    "relay_disturbed_by",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "rate_eps",
    "ratio_target",
    "latency_target",
]


@pytest.fixture(scope="module")
async def services() -> tuple[str, str]:
    """Kafka and a PostgreSQL role that may create databases, or skip (fail in CI) like the rest."""
    bootstrap = await require_kafka()
    probe = await create_postgres_database()
    await drop_postgres_database(probe)
    return bootstrap, postgres_admin_url()


def tiny(bootstrap: str, admin_url: str) -> list[str]:
    return [
        "--events",
        "300",
        "--rate",
        "100",
        "--seconds",
        "2",
        "--batch-size",
        "100",
        "--bootstrap",
        bootstrap,
        "--database-admin-url",
        admin_url,
    ]


async def test_the_benchmark_publishes_every_event_and_reports_every_figure(
    services: tuple[str, str],
) -> None:
    options = parse_args(tiny(*services))
    assert (options.events, options.rate, options.seconds, options.batch_size) == (300, 100.0, 2.0, 100)

    progress = io.StringIO()
    report = await run_benchmark(options, out=progress)

    assert len(report.pairs) == options.repeat == 3
    for pair in report.pairs:  # each pair relays its own 300 rows, then sends them raw
        assert pair.relay.published == pair.relay.events == pair.raw.acked == 300
        assert pair.relay.cpu > 0
        assert pair.raw.cpu > 0
    assert report.median_pair in report.pairs
    assert report.throughput.published == report.throughput.events == 300
    # 300 rows, rounds of up to OUTBOX_BATCHES_IN_FLIGHT batches of at most 100 rows each
    assert report.throughput.batches >= 300 // (100 * OutboxConfig().batches_in_flight)
    assert report.throughput.eps > 0
    assert report.raw.acked == report.raw.events == 300
    assert report.raw.eps > 0
    assert report.ratio > 0
    latency = report.latency
    assert latency.written == latency.acked == 200  # 100/s for 2 s, each committed and acked
    assert len(latency.latencies_ms) == 200
    assert latency.percentile(0.5) > 0
    assert latency.percentile(0.5) <= latency.percentile(0.99) <= max(latency.latencies_ms)
    assert latency.achieved_rate > 0
    assert sum(latency.batch_rows) == 200  # the running relay claimed each of them once

    lines = summary_lines(report)
    for key in SUMMARY_KEYS:
        assert any(line.startswith(f"{key}=") for line in lines), key
    assert any(line.startswith(("ratio_target=PASS", "ratio_target=MISS")) for line in lines)
    assert any(line.startswith(("latency_target=PASS", "latency_target=MISS")) for line in lines)
    assert "dropped" in progress.getvalue()
    assert not await database_exists(services[1], report.database)


async def test_the_command_prints_the_summary_and_exits_0(
    services: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await amain([*tiny(*services), "--writer", "outbox", "--writers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "--- summary ---" in out
    summary = out.split("--- summary ---", 1)[1].splitlines()
    for key in SUMMARY_KEYS:
        assert any(line.startswith(f"{key}=") for line in summary), key


async def test_an_unreachable_database_is_an_error_not_a_measurement(
    services: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap, admin_url = services
    unreachable = make_url(admin_url).set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    code = await amain(["--events", "10", "--bootstrap", bootstrap, "--database-admin-url", unreachable])
    assert code != 0
    assert "cannot create a database" in capsys.readouterr().err
