"""``python -m bench.observability_cost``: what tracing, metrics and export cost a read.

The same service four times, side by side on one fresh PostgreSQL database, each ``uvicorn --factory
app.main:create_app`` with the flags of ``bench.api_throughput`` (one worker, full mode, no worker
process):

- **on**: every part of observability on, as in production at its most expensive: tracing with
  ``OTEL_TRACES_SAMPLER=always_on`` (100 %), spans exported over OTLP/HTTP to a real receiver
  (``--otlp-endpoint``, default ``OTEL_EXPORTER_OTLP_ENDPOINT`` else ``http://127.0.0.1:4318``: start
  one with ``scripts/jaeger.sh up``), FastAPI, asyncpg and mediator spans, Prometheus metrics with
  exemplars, the gauges sampled every second; spans leave through fastotel
  (``SPAN_EXPORT=fastotel``, the default);
- **sdk**: the same, but spans leave through the SDK's ``BatchSpanProcessor`` and
  ``OTLPSpanExporter`` (``SPAN_EXPORT=sdk``), for the cost of encoding in Python;
- **default**: what the service runs with when nothing is configured: metrics, and trace ids on
  every request and log line, with no span recorded or exported;
- **off**: ``TRACING_ENABLED=false``, ``METRICS_ENABLED=false``.

wrk loads ``GET /api/v1/users/{id}`` over the seeded users, ``--rounds`` rounds back to back
(the order rotates), and the median of the rounds' req/s ratios on/off is the figure. Target
(issue 10): on >= 0.85 x off. The receiver must have taken the spans: the benchmark asks the
Jaeger query API (``--jaeger-url``) for the service's traces and reports how many it found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import make_url

from bench.api_throughput import (
    HEALTH_PATHS,
    SERVICE_APP,
    Options,
    Run,
    Scripts,
    Server,
    measure,
    seed_users,
    server_env,
)
from bench.relay_throughput import BenchmarkError, create_database, drop_database

TARGET = 0.85
SERVICE_NAME = "bench-observability"


@dataclass(frozen=True)
class Settings:
    options: Options
    otlp_endpoint: str
    jaeger_url: str
    variants: tuple[str, ...] = ("on", "sdk", "default", "off")


def environments(base: dict[str, str], settings: Settings) -> dict[str, dict[str, str]]:
    on = {
        **base,
        "SERVICE_NAME": SERVICE_NAME,
        "TRACING_ENABLED": "true",
        "METRICS_ENABLED": "true",
        "METRICS_SAMPLE_INTERVAL": "1",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otlp_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "SPAN_EXPORT": "fastotel",
    }
    sdk = {**on, "SPAN_EXPORT": "sdk"}
    default = {**base, "SERVICE_NAME": SERVICE_NAME, "TRACING_ENABLED": "true", "METRICS_ENABLED": "true"}
    off = {**base, "SERVICE_NAME": SERVICE_NAME, "TRACING_ENABLED": "false", "METRICS_ENABLED": "false"}
    for unexported in (default, off):
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            unexported.pop(name, None)
    variants = {"on": on, "sdk": sdk, "default": default, "off": off}
    return {name: variants[name] for name in settings.variants}


def reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4318), timeout=2):
            return True
    except OSError:
        return False


async def traces_received(jaeger_url: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(
                f"{jaeger_url}/api/traces", params={"service": SERVICE_NAME, "limit": 1000, "lookback": "1h"}
            )
        return len(response.json().get("data") or [])
    except (httpx.HTTPError, ValueError):
        return None


async def run(settings: Settings) -> list[Run]:
    options = settings.options
    if not reachable(settings.otlp_endpoint):
        raise BenchmarkError(
            f"no OTLP receiver at {settings.otlp_endpoint}: the 'on' server must export somewhere real;"
            " start one with scripts/jaeger.sh up (or pass --otlp-endpoint)"
        )
    wrk = shutil.which(options.wrk)
    if wrk is None:
        raise BenchmarkError(f"wrk ({options.wrk}) is not installed (apt-get install wrk)")
    options = replace(options, wrk=wrk)
    tag = uuid.uuid4().hex[:8]
    url = await create_database(options.database_admin_url)
    directory = Path(tempfile.mkdtemp(prefix=f"bench-obs-{tag}-"))
    servers = {
        name: Server(name, SERVICE_APP, HEALTH_PATHS["service"], directory / f"{name}.log")
        for name in settings.variants
    }
    runs: list[Run] = []
    try:
        ids = await seed_users(url, options.users, tag)
        for name, env in environments(server_env(url, options), settings).items():
            servers[name].start(env)
        for server in servers.values():
            await server.wait_ready(options.startup_timeout)
        scripts = Scripts(directory, tag, ids)
        for number in range(1, options.rounds + 1):
            shift = (number - 1) % len(settings.variants)
            order = settings.variants[shift:] + settings.variants[:shift]
            for name in order:
                result = await measure(options, servers[name], "get", number, scripts)
                runs.append(result)
                print(
                    f"[{number}] {name:<7} {result.rps:8.1f} req/s, p50 {result.wrk.p50_ms:.2f} ms,"
                    f" p99 {result.wrk.p99_ms:.2f} ms, {result.cpu_ms_per_request:.3f} ms CPU/req,"
                    f" non-2xx {result.wrk.non_2xx}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
        await drop_database(options.database_admin_url, url)
        print(f"database {make_url(url).database} dropped; logs in {directory}")
    return runs


def by_round(runs: list[Run]) -> dict[int, dict[str, Run]]:
    rounds: dict[int, dict[str, Run]] = {}
    for run in runs:
        rounds.setdefault(run.round, {})[run.target] = run
    return rounds


def ratios(rounds: dict[int, dict[str, Run]], variant: str) -> list[float]:
    """``variant``'s req/s over off's, round by round."""
    return [
        runs[variant].rps / runs["off"].rps if runs["off"].rps else 0.0
        for runs in rounds.values()
        if variant in runs and "off" in runs
    ]


def report(runs: list[Run], received: int | None) -> list[str]:
    rounds = by_round(runs)
    variants = [name for name in ("on", "sdk", "default") if any(run.target == name for run in runs)]
    lines = ["--- summary ---"]
    for name in variants:
        values = ratios(rounds, name)
        lines += [
            f"pairs ({name}/off req/s): "
            + ", ".join(f"{pair[name].rps:.0f}/{pair['off'].rps:.0f}" for pair in rounds.values()),
            f"get_{name}_off_ratios={','.join(f'{value:.3f}' for value in values)}",
            f"get_{name}_off_ratio={statistics.median(values):.3f}",
        ]
    for name in (*variants, "off"):
        cpu = statistics.median(run.cpu_ms_per_request for run in runs if run.target == name)
        lines.append(f"get_{name}_cpu_ms_per_req={cpu:.3f}")
    ratio = statistics.median(ratios(rounds, "on"))
    return [
        *lines,
        f"non_2xx={sum(run.wrk.non_2xx for run in runs)}",
        f"traces_received={received if received is not None else 'unknown (no Jaeger query API)'}",
        f"target={'PASS' if ratio >= TARGET else 'MISS'} (on/off >= {TARGET:g})",
    ]


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.observability_cost", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--only-target",
        action="store_true",
        help="only on and off (skip the SDK exporter's variant and the default configuration)",
    )
    parser.add_argument(
        "--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://127.0.0.1:4318"
    )
    parser.add_argument(
        "--jaeger-url", default=os.environ.get("JAEGER_QUERY_URL") or "http://127.0.0.1:16686"
    )
    args = parser.parse_args(argv)
    options = replace(
        Options(),
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        users=args.users,
    )
    variants = ("on", "off") if args.only_target else ("on", "sdk", "default", "off")
    return Settings(options, args.otlp_endpoint.rstrip("/"), args.jaeger_url.rstrip("/"), variants)


async def amain(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        runs = await run(settings)
    except BenchmarkError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    await asyncio.sleep(2)  # the last batch of spans
    for line in report(runs, await traces_received(settings.jaeger_url)):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
