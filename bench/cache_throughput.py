"""``python -m bench.cache_throughput``: what the Redis read cache buys a read of a user.

``GET /api/v1/users/{id}``, the same service with the read cache (cached) and without it
(uncached), in one run.

One run, against a fresh PostgreSQL database (created, migrated, dropped, as in
``bench.api_throughput``, whose pieces this reuses) and a Redis server (``--redis-url``, default
``REDIS_URL`` else ``redis://127.0.0.1:6379/0``; not reachable: an error, exit code 1):

1. **Two servers** of the service, each ``uvicorn --factory app.main:create_app`` with the flags of
   ``bench.api_throughput`` (uvloop, httptools, no access log; API process in full mode, no worker
   process) and ``--workers`` processes: **2 by default**, as gunicorn.conf.py runs the API. So each
   server has the machine's cores, which PostgreSQL shares as it would share a database host's, and
   what the database costs a read is part of the comparison (with ``--workers 1`` the server is one
   process on one core and PostgreSQL works on the other for free). Both have the same environment
   but one variable: both have ``REDIS_URL`` and the run's own ``REDIS_KEY_PREFIX``
   (``bench-<random>:``) and ``RATE_LIMIT_REGISTRATIONS=0``; the **cached** one ``CACHE_TTL=300``,
   the **uncached** one ``CACHE_TTL=0`` (no read cache: every GET reads PostgreSQL).
2. **Seed** ``--users`` (1,000) users into the ``users`` table. **Check** before measuring: a GET
   on the uncached server leaves no entry in Redis; a GET on the cached server leaves
   ``<prefix>reads:user:<id>``; that id's body and ETag are the same from the cached server's miss, its
   hit and the uncached server (a difference fails the run).
3. **Warm**: every seeded id is GET once on both servers (the same work on each); every id's entry
   must then be in Redis, so the wrk runs, which rotate over exactly these ids, only hit.
4. **Load** with wrk as ``bench.api_throughput`` does (``--connections`` 32, ``--threads`` 1, the
   seeded ids rotating): ``--rounds`` (3) pairs, the cached and the uncached server back to back
   (which one goes first alternates), each ``--warmup`` seconds (2) unmeasured, then ``--duration``
   seconds (10) measured: req/s, p50 and p99 latency, non-2xx, socket errors, the **CPU per
   request of the server's processes** (``/proc/<pid>/stat`` of uvicorn and its workers), and of
   the **stores** (every ``postgres`` and ``redis-server`` process). Around each cached run the service's
   ``app_cache_lookups_total`` (``GET /metrics``) gives its hits and misses: misses should be 0.
5. **Ratio** cached/uncached req/s of each pair, and their median. Target: cached >= 1.5 x uncached.

It prints a table, then a summary of ``key=value`` lines with PASS/MISS; the exit code is 0 whatever
the figures, non-zero only when the benchmark itself failed (wrk missing, PostgreSQL or Redis not
reachable, a server that does not start or answers wrongly). At the end (also on Ctrl-C or SIGTERM)
the servers are stopped, the run's Redis keys deleted (``SCAN`` + ``UNLINK`` of the prefix) and the
database dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, TextIO

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from app.building_blocks.application.caching import aggregate_cache_key
from app.building_blocks.infrastructure.cache import CacheUnavailableError, RedisClient, RedisConfig
from app.building_blocks.infrastructure.cache.read_cache import entry_key as read_cache_entry_key
from app.settings import Settings
from app.users.domain.user import User
from bench.api_throughput import (
    HEALTH_PATHS,
    SERVICE_APP,
    UVICORN_FLAGS,
    Options,
    Report,
    Run,
    Scripts,
    Server,
    argument_parser,
    http_call,
    load_lines,
    measure,
    options_from,
    print_report,
    run_until_interrupted,
    scan_log,
    seed_users,
    server_env,
    verdict,
)
from bench.relay_throughput import BenchmarkError, create_database, drop_database

ROUTE = "get"  # the runs' route in bench.api_throughput's terms: GET /api/v1/users/{id}
CACHED, UNCACHED = "cached", "uncached"
CACHE_TTL = 300  # seconds: longer than a default run, so no entry expires while it is measured
TARGET = 1.5  # cached req/s over uncached req/s
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WARM_CONCURRENCY = 8
LOOKUP_SAMPLE = re.compile(r"^app_cache_lookups_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)", re.MULTILINE)
LOOKUP_RESULTS = {"hit": "cache_hits", "miss": "cache_misses", "bypassed": "cache_bypassed"}  # summary keys


def entry_key(user_id: str) -> str:
    """The read cache's key of a user, without the client's prefix (as the service makes it)."""
    return read_cache_entry_key(aggregate_cache_key(User, user_id))


@dataclass
class CacheReport(Report):
    pair: ClassVar[tuple[str, str]] = (CACHED, UNCACHED)
    redis: str = ""  # where, without a password
    prefix: str = ""
    warmed: int = 0  # ids whose entry was in Redis before the first wrk run
    lookups: dict[str, int] | None = None  # the cached server's, over its wrk runs; None: no /metrics
    keys_deleted: int = 0
    keys_left: int = 0

    def cpu_ratios(self) -> list[float]:
        cached, uncached = self.runs_of(ROUTE, CACHED), self.runs_of(ROUTE, UNCACHED)
        return [
            a.cpu_ms_per_request / b.cpu_ms_per_request if b.cpu_ms_per_request else 0.0
            for a, b in zip(cached, uncached, strict=True)
        ]


# --- Redis and the servers' answers -------------------------------------------------------------


async def connect_redis(url: str, prefix: str) -> RedisClient:
    """A client of the run's prefix, once Redis answered a PING; else a :class:`BenchmarkError`."""
    try:
        client = RedisClient(RedisConfig.from_url(url, key_prefix=prefix, socket_timeout=5.0))
    except ValueError as error:
        raise BenchmarkError(f"--redis-url {url!r} is not a Redis URL: {error}") from None
    try:
        await client.ping()
    except CacheUnavailableError as error:
        await client.close()
        raise BenchmarkError(
            f"Redis is not reachable at {client.describe()} ({error}): the cached server reads from it;"
            " start it with scripts/services.sh up, or pass --redis-url (REDIS_URL)"
        ) from None
    return client


async def count_entries(redis: RedisClient, ids: Sequence[str]) -> int:
    present = 0
    for start in range(0, len(ids), 500):
        present += await redis.exists(*(entry_key(i) for i in ids[start : start + 500]))
    return present


async def count_keys(redis: RedisClient) -> int:
    """Every key under the run's prefix (``bench-<hex>:`` has no glob characters)."""
    return len([name async for name in redis.redis.scan_iter(match=f"{redis.prefix}*", count=500)])


async def get_user(http: httpx.AsyncClient, server: Server, user_id: str) -> tuple[bytes, str | None]:
    path = f"/api/v1/users/{user_id}"
    response = await http.get(f"{server.url}{path}")
    if response.status_code != 200:
        raise server.failure(f"answered GET {path} with {response.status_code}: {response.content[:300]!r}")
    return response.content, response.headers.get("etag")


async def check_answers(
    http: httpx.AsyncClient, servers: dict[str, Server], redis: RedisClient, ids: Sequence[str]
) -> None:
    """The uncached server writes no entry, the cached one does, and both answer alike."""
    probe = ids[-1]
    await get_user(http, servers[UNCACHED], probe)
    if await redis.exists(entry_key(probe)):
        raise BenchmarkError(f"the uncached server (CACHE_TTL=0) left {redis.key(entry_key(probe))} in Redis")
    user_id = ids[0]
    answers = {"cached server, miss": await get_user(http, servers[CACHED], user_id)}
    if not await redis.exists(entry_key(user_id)):
        raise BenchmarkError(
            f"no {redis.key(entry_key(user_id))} in Redis after a GET on the cached server: it does not"
            f" cache (its log: {servers[CACHED].log_path})"
        )
    answers["cached server, hit"] = await get_user(http, servers[CACHED], user_id)
    answers["uncached server"] = await get_user(http, servers[UNCACHED], user_id)
    if len(set(answers.values())) != 1:
        found = "; ".join(f"{name}: ETag {tag} body {body[:300]!r}" for name, (body, tag) in answers.items())
        raise BenchmarkError(f"GET /api/v1/users/{user_id} answers differ: {found}")
    if answers["uncached server"][1] is None:
        raise BenchmarkError(f"GET /api/v1/users/{user_id} answered without an ETag")


async def warm(http: httpx.AsyncClient, servers: dict[str, Server], ids: Sequence[str]) -> None:
    """Every id once on each server, a few at a time."""
    gate = asyncio.Semaphore(WARM_CONCURRENCY)

    async def one(server: Server, user_id: str) -> None:
        async with gate:
            await get_user(http, server, user_id)

    async with asyncio.TaskGroup() as group:
        for server in servers.values():
            for user_id in ids:
                group.create_task(one(server, user_id))


def cache_lookups(server: Server) -> dict[str, int] | None:
    """The server's read-cache lookups by result (``GET /metrics``); None without metrics."""
    status, body = http_call(server.port, "GET", "/metrics")
    if status != 200:
        return None
    counts = dict.fromkeys(LOOKUP_RESULTS, 0)
    for sample in LOOKUP_SAMPLE.finditer(body.decode(errors="replace")):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', sample["labels"]))
        if labels.get("cache") == "queries" and labels.get("result") in counts:
            counts[labels["result"]] += int(float(sample["value"]))
    return counts


# --- the measurement ------------------------------------------------------------------------------


async def measure_pair_member(
    options: Options, server: Server, number: int, scripts: Scripts, lookups: dict[str, int] | None
) -> tuple[Run, dict[str, int] | None]:
    """One wrk run; for the cached server, the lookups it counted meanwhile (added to ``lookups``)."""
    if server.name != CACHED:
        return await measure(options, server, ROUTE, number, scripts), lookups
    before = await asyncio.to_thread(cache_lookups, server)
    result = await measure(options, server, ROUTE, number, scripts)
    after = await asyncio.to_thread(cache_lookups, server)
    if before is None or after is None or lookups is None:
        return result, None
    return result, {key: lookups[key] + after[key] - before[key] for key in LOOKUP_RESULTS}


def progress(run: Run) -> str:
    return (
        f"[{run.round}] {run.target:<8} {run.rps:8.1f} req/s, p50 {run.wrk.p50_ms:.2f} ms,"
        f" p99 {run.wrk.p99_ms:.2f} ms, {run.cpu_ms_per_request:.3f} ms CPU/req,"
        f" non-2xx {run.wrk.non_2xx}, socket errors {run.wrk.socket_errors}"
    )


async def run_benchmark(options: Options, redis_url: str, *, out: TextIO | None = None) -> CacheReport:
    """Both servers on a database of their own, dropped at the end, the Redis keys deleted."""

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out, flush=True)

    wrk = shutil.which(options.wrk)
    if wrk is None:
        raise BenchmarkError(f"wrk ({options.wrk}) is not installed (apt-get install wrk)")
    options = replace(options, wrk=wrk)
    try:
        database_settings = Settings().database
    except ValidationError as error:
        raise BenchmarkError(f"the service's settings (environment) are not valid: {error}") from None
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-{tag}:"
    redis = await connect_redis(redis_url, prefix)
    runs_total = 2 * options.rounds
    say(
        f"cache benchmark {tag}: GET /api/v1/users/{{id}} over {options.users} ids, cached (CACHE_TTL="
        f"{CACHE_TTL}, Redis {redis.describe()}, prefix {prefix}) vs uncached (CACHE_TTL=0); wrk"
        f" {options.connections} connections, {options.threads} thread(s); {runs_total} runs of"
        f" {options.duration}s after {options.warmup}s warm-up; servers: uvicorn --workers"
        f" {options.workers} {' '.join(UVICORN_FLAGS)}"
    )
    load_before = os.getloadavg()[0]
    directory = Path(tempfile.mkdtemp(prefix=f"bench-cache-{tag}-"))
    servers = {
        name: Server(
            name, SERVICE_APP, HEALTH_PATHS["service"], directory / f"{name}.log", workers=options.workers
        )
        for name in (CACHED, UNCACHED)
    }
    report = CacheReport(
        options=options,
        database="",
        pool=(database_settings.pool_size, database_settings.max_overflow),
        runs=[],
        outbox_row_bytes={},
        logs={},
        redis=redis.describe(),
        prefix=prefix,
        lookups=dict.fromkeys(LOOKUP_RESULTS, 0),
    )
    keep = options.keep_logs
    try:
        url = await create_database(options.database_admin_url)
        report.database = make_url(url).database or ""
        say(f"database {report.database} created and migrated")
        try:
            ids = await seed_users(url, options.users, tag)
            base = server_env(url, options) | {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix}
            base |= {"API_PROCESSES": str(options.workers)}
            for name, server in servers.items():
                metrics = directory / f"metrics-{name}"  # /metrics sums the workers' counts
                metrics.mkdir()
                ttl = str(CACHE_TTL if name == CACHED else 0)
                server.start(base | {"CACHE_TTL": ttl, "PROMETHEUS_MULTIPROC_DIR": str(metrics)})
            for server in servers.values():
                await server.wait_ready(options.startup_timeout)
            say(
                f"{len(ids)} users seeded; cached pid {servers[CACHED].pid} on {servers[CACHED].url},"
                f" uncached pid {servers[UNCACHED].pid} on {servers[UNCACHED].url}; logs in {directory}"
            )
            async with httpx.AsyncClient(timeout=10) as http:
                await check_answers(http, servers, redis, ids)
                say("checked: both servers answer the same body and ETag; only the cached one fills Redis")
                await warm(http, servers, ids)
            report.warmed = await count_entries(redis, ids)
            if report.warmed != len(ids):
                raise BenchmarkError(f"after warming, {report.warmed} of {len(ids)} ids are cached in Redis")
            say(f"warmed: all {len(ids)} ids cached in Redis")
            scripts = Scripts(directory, tag, ids)
            for number in range(1, options.rounds + 1):
                order = (CACHED, UNCACHED) if number % 2 else (UNCACHED, CACHED)
                for name in order:
                    run, report.lookups = await measure_pair_member(
                        options, servers[name], number, scripts, report.lookups
                    )
                    report.runs.append(run)
                    say(progress(run))
        finally:
            for server in servers.values():
                server.stop()
            await drop_database(options.database_admin_url, url)
            say(f"database {report.database} dropped")
    except BaseException:
        keep = True
        raise
    finally:
        try:
            report.keys_deleted = await redis.clear()
            report.keys_left = await count_keys(redis)
            say(f"{report.keys_deleted} Redis keys of {prefix} deleted, {report.keys_left} left")
        finally:
            await redis.close()
            report.logs = {name: scan_log(server.log_path) for name, server in servers.items()}
            keep = keep or any(stats.errors for stats in report.logs.values())
            if keep:
                say(f"server logs kept: {', '.join(str(stats.path) for stats in report.logs.values())}")
            else:
                shutil.rmtree(directory, ignore_errors=True)
    for name, stats in report.logs.items():
        for line in stats.errors[:5]:
            say(f"{name} log: {line}")
    lookups = report.lookups
    if lookups is not None and (lookups["miss"] or lookups["bypassed"]):
        report.warnings.append(
            f"the cached server missed {lookups['miss']} and bypassed {lookups['bypassed']} lookups under"
            " load: entries expired or were evicted, or Redis did not answer in time"
        )
    report.load = (load_before, os.getloadavg()[0])
    return report


# --- output ---------------------------------------------------------------------------------------


def tables(report: CacheReport) -> list[str]:
    lines = [
        "",
        f"GET /api/v1/users/{{id}} ({report.options.users} ids rotating), cached vs uncached",
        f"  {'round':>5}  {'server':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'sock err':>8} {'CPU ms/req':>10} {'srv CPU':>8} {'stores ms/req':>13}",
    ]
    for run in sorted(report.runs, key=lambda run: run.round):
        lines.append(
            f"  {run.round:>5}  {run.target:<8} {run.rps:>9.1f} {run.wrk.p50_ms:>8.2f} {run.wrk.p99_ms:>8.2f}"
            f" {run.wrk.non_2xx:>8} {run.wrk.socket_errors:>8} {run.cpu_ms_per_request:>10.3f}"
            f" {run.cpu_share:>8.0%} {run.store_cpu_ms_per_request:>13.3f}"
        )
    ratio = report.ratio(ROUTE)
    lines += [
        f"  req/s cached/uncached per round: {', '.join(f'{value:.3f}' for value in report.ratios(ROUTE))};"
        f" median {ratio:.3f}",
        "  CPU per request cached/uncached per round: "
        + ", ".join(f"{value:.2f}" for value in report.cpu_ratios()),
        f"target cached >= {TARGET:g}x uncached: {verdict(ratio, TARGET)}",
    ]
    return lines


def summary_lines(report: CacheReport) -> list[str]:
    options = report.options
    lines = [
        *load_lines(options),
        f"cache_ttl_s={CACHE_TTL}",
        f"redis={report.redis}",
        f"key_prefix={report.prefix}",
    ]
    for name in (CACHED, UNCACHED):
        lines += [
            f"get_{name}_rps={report.median(ROUTE, name, 'rps'):.1f}",
            f"get_{name}_p50_ms={report.latency(ROUTE, name, 'p50_ms'):.2f}",
            f"get_{name}_p99_ms={report.latency(ROUTE, name, 'p99_ms'):.2f}",
            f"get_{name}_cpu_ms_per_req={report.median(ROUTE, name, 'cpu_ms_per_request'):.3f}",
            f"get_{name}_store_cpu_ms_per_req={report.median(ROUTE, name, 'store_cpu_ms_per_request'):.3f}",
        ]
    ratio = report.ratio(ROUTE)
    lookups = report.lookups
    lines += [
        f"get_ratio={ratio:.3f}",
        f"get_ratios={','.join(f'{value:.3f}' for value in report.ratios(ROUTE))}",
        f"cpu_per_request_cached_uncached={','.join(f'{value:.2f}' for value in report.cpu_ratios())}",
        f"cached_entries_warmed={report.warmed}",
        *(
            f"{key}={lookups[result] if lookups is not None else 'unknown (no /metrics)'}"
            for result, key in LOOKUP_RESULTS.items()
        ),
        f"requests={report.requests}",
        f"non_2xx={report.non_2xx}",
        f"socket_errors={report.socket_errors}",
        f"redis_keys_deleted={report.keys_deleted}",
        f"redis_keys_left={report.keys_left}",
        f"cached_log_errors={len(report.logs[CACHED].errors)}",
        f"uncached_log_errors={len(report.logs[UNCACHED].errors)}",
        f"loadavg_1m={report.load[0]:.2f}->{report.load[1]:.2f} on {os.cpu_count()} CPUs",
        f"target={verdict(ratio, TARGET)} (cached/uncached >= {TARGET:g})",
    ]
    lines += [f"WARNING: {warning}" for warning in report.warnings]
    return lines


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, str]:
    parser = argument_parser("python -m bench.cache_throughput", (__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        help=f"the Redis of the cached server (REDIS_URL, else {DEFAULT_REDIS_URL})",
    )
    # As the API runs in production (gunicorn.conf.py: 2 workers): the server has the machine's
    # cores, which PostgreSQL shares, so what the database costs a read counts in the ratio.
    parser.set_defaults(workers=2)
    args = parser.parse_args(argv)
    return options_from(parser, args), args.redis_url


async def amain(argv: Sequence[str] | None = None) -> int:
    options, redis_url = parse_args(argv)
    return await print_report(
        run_benchmark(options, redis_url, out=sys.stdout),
        lambda report: [*tables(report), "--- summary ---", *summary_lines(report)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_until_interrupted(lambda: amain(argv), "servers stopped, Redis keys deleted, database dropped")


if __name__ == "__main__":
    sys.exit(main())
