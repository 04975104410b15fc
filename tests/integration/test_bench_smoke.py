"""The benchmarks (bench/relay_throughput.py, bench/api_throughput.py) still run end to end, on
tiny sizes.

Only behaviour is asserted: every event is published and acked, every request answered, each
figure is measured, the summary has its lines and the database is dropped. Speed is what the
benchmarks report, never what a test checks.
"""

from __future__ import annotations

import asyncio
import io
import shutil

import pytest
from sqlalchemy.engine import make_url

from app.building_blocks.infrastructure.cache import RedisClient, RedisConfig
from app.building_blocks.infrastructure.messaging.config import OutboxConfig
from bench import api_throughput, cache_throughput, webhook_throughput
from bench.relay_throughput import (
    amain,
    database_exists,
    parse_args,
    run_benchmark,
    summary_lines,
)
from tests.kafka_service import require_kafka
from tests.services import create_postgres_database, drop_postgres_database, postgres_admin_url

pytestmark = [pytest.mark.postgres]  # the relay benchmark's tests need Kafka too (marked)

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


@pytest.mark.kafka
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


@pytest.mark.kafka
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


@pytest.mark.kafka
async def test_an_unreachable_database_is_an_error_not_a_measurement(
    services: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap, admin_url = services
    unreachable = make_url(admin_url).set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    code = await amain(["--events", "10", "--bootstrap", bootstrap, "--database-admin-url", unreachable])
    assert code != 0
    assert "cannot create a database" in capsys.readouterr().err


# --- bench/api_throughput.py ------------------------------------------------------------------------

API_SUMMARY_NUMBERS = [
    f"{route}_{figure}"
    for route in ("get", "post", "health")
    for figure in (
        "service_rps",
        "baseline_rps",
        "ratio",
        "service_p50_ms",
        "service_p99_ms",
        "baseline_p50_ms",
        "baseline_p99_ms",
        "service_cpu_ms_per_req",
        "baseline_cpu_ms_per_req",
    )
] + [
    "requests",
    "non_2xx",
    "socket_errors",
    "outbox_row_bytes_service",
    "outbox_row_bytes_baseline",
    "service_log_lines",
    "service_log_errors",
    "baseline_log_errors",
]


def require_wrk() -> None:
    """wrk is an optional tool (make bench-api only): without it the smoke test is skipped."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (the load generator of make bench-api); apt-get install wrk")


@pytest.fixture(scope="module")
async def postgres_admin() -> str:
    """A PostgreSQL role that may create databases, or skip (fail in CI) like the rest."""
    probe = await create_postgres_database()
    await drop_postgres_database(probe)
    return postgres_admin_url()


async def test_the_api_benchmark_runs_every_pair_and_reports_every_figure(postgres_admin: str) -> None:
    require_wrk()
    options = api_throughput.parse_args(
        [
            *("--duration", "1", "--warmup", "0", "--rounds", "1", "--connections", "4"),
            *("--users", "20", "--database-admin-url", postgres_admin),
        ]
    )
    progress = io.StringIO()
    report = await api_throughput.run_benchmark(options, out=progress)

    # one service run and one baseline run per path, each answered, measured and error-free
    assert sorted((run.route, run.target) for run in report.runs) == sorted(
        (route, target) for route in ("get", "post", "health") for target in ("service", "baseline")
    )
    for run in report.runs:
        assert run.wrk.requests > 0, run
        assert run.wrk.non_2xx == 0, run
        assert run.cpu > 0, run  # the server's CPU was read from /proc
        assert run.wrk.p50_ms <= run.wrk.p99_ms <= run.wrk.max_ms
    assert report.non_2xx == 0
    # the baseline writes outbox rows the size of the service's
    sizes = report.outbox_row_bytes
    assert sizes["service"] > 0
    assert abs(sizes["service"] - sizes["baseline"]) <= 0.05 * sizes["service"], sizes
    assert not report.warnings  # both answer the same JSON

    summary = dict(line.split("=", 1) for line in api_throughput.summary_lines(report) if "=" in line)
    for key in API_SUMMARY_NUMBERS:
        float(summary[key])  # present, and a number
    assert summary["non_2xx"] == "0"
    assert summary["get_target"].startswith(("PASS", "MISS"))
    assert summary["post_target"].startswith(("PASS", "MISS"))
    assert "dropped" in progress.getvalue()
    assert not await database_exists(postgres_admin, report.database)
    logs = [stats.path for stats in report.logs.values()]
    assert not any([await asyncio.to_thread(path.exists) for path in logs])  # temp files removed


async def test_the_api_benchmark_without_wrk_says_so_and_fails(
    postgres_admin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await api_throughput.amain(["--wrk", "/nonexistent/wrk", "--database-admin-url", postgres_admin])
    assert code != 0
    assert "wrk" in capsys.readouterr().err


# --- bench/cache_throughput.py ----------------------------------------------------------------------

CACHE_SUMMARY_NUMBERS = [
    *(
        f"get_{server}_{figure}"
        for server in ("cached", "uncached")
        for figure in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req")
    ),
    "get_ratio",
    "cached_entries_warmed",
    "cache_hits",
    "cache_misses",
    "cache_bypassed",
    "requests",
    "non_2xx",
    "socket_errors",
    "redis_keys_deleted",
    "redis_keys_left",
    "cached_log_errors",
    "uncached_log_errors",
]


async def test_the_cache_benchmark_measures_both_servers_and_deletes_its_keys(
    postgres_admin: str, redis_url: str
) -> None:
    require_wrk()
    options, redis = cache_throughput.parse_args(
        [
            *("--duration", "1", "--warmup", "1", "--rounds", "1", "--connections", "4"),
            *("--users", "20", "--database-admin-url", postgres_admin, "--redis-url", redis_url),
        ]
    )
    progress = io.StringIO()
    report = await cache_throughput.run_benchmark(options, redis, out=progress)

    # one cached and one uncached run, each answered, measured and error-free
    assert sorted(run.target for run in report.runs) == ["cached", "uncached"]
    for run in report.runs:
        assert run.wrk.requests > 0, run
        assert run.wrk.non_2xx == 0, run
        assert run.wrk.socket_errors == 0, run
        assert run.cpu > 0, run  # the server's CPU was read from /proc
        assert run.wrk.p50_ms <= run.wrk.p99_ms <= run.wrk.max_ms
    assert len(report.ratios("get")) == 1
    assert len(report.cpu_ratios()) == 1
    # every id was cached before wrk ran, so the cached server only hit
    assert report.warmed == 20
    assert report.lookups is not None
    assert report.lookups["hit"] > 0
    assert report.lookups["miss"] == report.lookups["bypassed"] == 0
    assert not report.warnings

    summary = dict(line.split("=", 1) for line in cache_throughput.summary_lines(report) if "=" in line)
    for key in CACHE_SUMMARY_NUMBERS:
        float(summary[key])  # present, and a number
    float(summary["get_ratios"])  # one round: one ratio
    assert summary["target"].startswith(("PASS", "MISS"))
    tables = "\n".join(cache_throughput.tables(report))
    assert "target cached >= 1.5x uncached: " in tables
    assert summary["non_2xx"] == "0"
    assert summary["cached_log_errors"] == summary["uncached_log_errors"] == "0"

    # the run's keys are gone from Redis, its database dropped, its temp files removed
    assert report.prefix.startswith("bench-")
    assert int(summary["redis_keys_deleted"]) >= 20
    assert summary["redis_keys_left"] == "0"
    client = RedisClient(RedisConfig.from_url(redis_url, key_prefix=report.prefix))
    try:
        assert [key async for key in client.redis.scan_iter(match=f"{report.prefix}*")] == []
    finally:
        await client.close()
    assert "dropped" in progress.getvalue()
    assert not await database_exists(postgres_admin, report.database)
    logs = [stats.path for stats in report.logs.values()]
    assert not any([await asyncio.to_thread(path.exists) for path in logs])


async def test_the_cache_benchmark_without_redis_says_so_and_fails(
    postgres_admin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_wrk()
    code = await cache_throughput.amain(
        ["--redis-url", "redis://127.0.0.1:1/0", "--database-admin-url", postgres_admin]
    )
    assert code != 0
    assert "Redis is not reachable" in capsys.readouterr().err


# --- bench/webhook_throughput.py --------------------------------------------------------------------

WEBHOOK_SUMMARY_NUMBERS = [
    *(
        f"{sender}_{figure}"
        for sender in ("kit", "bare")
        for figure in ("dps", "cpu_ms_per_delivery", "receiver_cpu_ms_per_delivery")
    ),
    "ratio",
    "ratios",
    "messages",
    "lanes",
    "rounds",
    "received",
]


async def test_the_webhook_benchmark_measures_both_senders_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await webhook_throughput.amain(["--messages", "20", "--warmup", "5", "--rounds", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "receiver stopped" in captured.out
    assert "--- summary ---" in captured.out
    summary = dict(
        line.split("=", 1) for line in captured.out.split("--- summary ---", 1)[1].splitlines() if "=" in line
    )
    for key in WEBHOOK_SUMMARY_NUMBERS:
        assert float(summary[key]) >= 0, key  # present, and a number
    for key in ("kit_dps", "bare_dps", "kit_cpu_ms_per_delivery", "bare_cpu_ms_per_delivery", "ratio"):
        assert float(summary[key]) > 0, key  # measured (the receiver's CPU is read in clock ticks: may be 0)
    # two checked deliveries, then warm-up + measured deliveries of each sender, all counted
    assert summary["received"] == str(2 + 2 * (5 + 20))
    assert summary["target"].startswith(("PASS", "MISS"))


async def test_the_webhook_benchmark_runs_concurrent_lanes() -> None:
    options = webhook_throughput.parse_args(
        ["--messages", "16", "--warmup", "0", "--rounds", "2", "--lanes", "4"]
    )
    report = await webhook_throughput.run_benchmark(options)
    assert [(run.round, run.sender) for run in report.runs] == [
        (1, "kit"),
        (1, "bare"),
        (2, "bare"),
        (2, "kit"),
    ]
    assert all(run.deliveries == 16 and run.dps > 0 and run.cpu > 0 for run in report.runs)
    assert len(report.ratios()) == 2
    assert report.received == 2 + 4 * 16
