"""``python -m bench.api_throughput``: how many requests per second the API serves, against the same
work done plainly (bare FastAPI + asyncpg).

One run, against a fresh PostgreSQL database (created, migrated with ``app.migrate.upgrade``, dropped):

1. **Two servers**, each ``uvicorn --factory`` with the same flags (``--workers`` processes, 1 by
   default, and :data:`UVICORN_FLAGS`: uvloop, httptools, log level warning, no access log) on a
   free port, its output in a temp file: the **service** (``app.main:create_app``, the API process
   only, in full mode: ``KAFKA_BOOTSTRAP_SERVERS`` is set, so commands write the outbox and neither
   relay nor consumers run here; the API never connects to Kafka and no worker is started; no
   cache), its logging as a user gets it (``LOG_LEVEL``, ``LOG_JSON`` from the environment, else the
   defaults); and the **baseline** (``bench/baseline_app.py``: the three routes written plainly,
   FastAPI + an asyncpg pool of the service's size, on the same tables, answering the same JSON).
2. **Seed** ``--users`` (1,000) users straight into the service's ``users`` table (values from
   ``User.register``). A check then GETs one of them and POSTs one user on each server: both must
   answer 200/201, and the bodies are compared (a difference is reported as a WARNING).
3. **Load** with wrk (``--connections`` 32, ``--threads`` 1: on the 2-core machine this is written
   for, one load-generator thread leaves the other core to the server and PostgreSQL; more would
   starve the server being measured). wrk runs Lua scripts generated per run: GET rotates over the
   seeded ids, POST sends emails unique per run, target, round, wrk thread and request, and
   ``done()`` prints a JSON summary. For each path (``GET /api/v1/users/{id}``, ``POST
   /api/v1/users``, ``GET /health/live`` vs the baseline's ``GET /hello``) and each of ``--rounds``
   (3) rounds, the service and the baseline run back to back (which one goes first alternates),
   each ``--warmup`` seconds (2) unmeasured, then ``--duration`` seconds (10) measured: req/s, p50
   and p99 latency, non-2xx (wrk's ``errors.status``: responses >= 400), socket errors, and the
   **CPU per request of the server process** (utime + stime of all its threads, from
   ``/proc/<pid>/stat`` before and after, in ms per request).
4. **Ratios** service/baseline of req/s, one per pair; each path's median is reported, so one pair
   disturbed by the shared machine does not decide it. Targets (issue 9): GET >= 0.6, POST >= 0.5.

It prints a table per path, then a summary of ``key=value`` lines and PASS/MISS per target; the exit
code is 0 whatever the figures (a measurement), non-zero only when the benchmark itself failed (wrk
missing, a server that does not start or answers wrongly, wrk failing). The servers are stopped
(SIGTERM, then SIGKILL) and the database dropped at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, ClassVar, TextIO, TypeVar

from pydantic import ValidationError
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.settings import Settings
from app.users.domain import Email, User
from app.users.persistence.tables import users_table
from bench.relay_throughput import (
    DEFAULT_ADMIN_URL,
    BenchmarkError,
    create_database,
    drop_database,
    positive_int,
)

logger = logging.getLogger("bench.api_throughput")

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
UVICORN_FLAGS = (
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
    "--no-access-log",
)
"""The same for both servers: what is compared is the application, not the server's settings."""
SERVICE_APP = "app.main:create_app"
BASELINE_APP = "bench.baseline_app:create_app"
TARGETS = ("service", "baseline")
EMAIL_TAGS = {"service": "svc", "baseline": "bsl"}  # same length: same-sized rows on both sides
WRK_TIMEOUT = "10s"  # a response slower than this counts as a socket error (timeout)
WRK_MARKER = "WRK_SUMMARY "
STOP_GRACE = 10.0  # seconds a server gets to stop after SIGTERM before SIGKILL
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")


@dataclass(frozen=True)
class Route:
    key: str  # the summary's prefix: get, post, health
    title: str
    target: float | None  # the median ratio service/baseline to reach, if any


ROUTES = (
    Route("get", "GET /api/v1/users/{id}", 0.6),
    Route("post", "POST /api/v1/users", 0.5),
    Route("health", "GET /health/live (service) vs GET /hello (baseline)", None),
)
R = TypeVar("R")
HEALTH_PATHS = {"service": "/health/live", "baseline": "/hello"}


@dataclass(frozen=True)
class Options:
    connections: int = 32
    threads: int = 1
    duration: int = 10  # seconds measured per run
    warmup: int = 2  # seconds of unmeasured load before each measured run
    rounds: int = 3
    users: int = 1000
    database_admin_url: str = DEFAULT_ADMIN_URL
    bootstrap: str = "127.0.0.1:9092"  # only to put the service in full mode; it never connects
    wrk: str = "wrk"
    startup_timeout: float = 60.0
    keep_logs: bool = False
    workers: int = 1  # uvicorn processes per server


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True)
class Run:
    route: str
    target: str
    round: int
    wrk: WrkResult
    cpu: float  # seconds of the server's CPU (its processes) while wrk ran
    wrk_cpu: float  # seconds of wrk's own CPU
    store_cpu: float = 0.0  # seconds of PostgreSQL's and Redis's CPU meanwhile (every backend)

    @property
    def rps(self) -> float:
        return self.wrk.requests / self.wrk.seconds if self.wrk.seconds > 0 else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu * 1000 / self.wrk.requests if self.wrk.requests else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.wrk.seconds if self.wrk.seconds > 0 else 0.0

    @property
    def store_cpu_ms_per_request(self) -> float:
        return self.store_cpu * 1000 / self.wrk.requests if self.wrk.requests else 0.0

    @property
    def wrk_cpu_share(self) -> float:
        return self.wrk_cpu / self.wrk.seconds if self.wrk.seconds > 0 else 0.0


@dataclass
class LogStats:
    path: Path
    lines: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Report:
    pair: ClassVar[tuple[str, str]] = TARGETS  # a ratio is the first's req/s over the second's
    options: Options
    database: str
    pool: tuple[int, int]  # DATABASE_POOL_SIZE, DATABASE_MAX_OVERFLOW
    runs: list[Run]
    outbox_row_bytes: dict[str, float]  # mean payload + headers bytes of the rows each target wrote
    logs: dict[str, LogStats]
    warnings: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    def runs_of(self, route: str, target: str) -> list[Run]:
        return [run for run in self.runs if run.route == route and run.target == target]

    def ratios(self, route: str) -> list[float]:
        """Service/baseline (:attr:`pair`) req/s of each round's pair."""
        first, second = self.pair
        pairs = zip(self.runs_of(route, first), self.runs_of(route, second), strict=True)
        return [service.rps / baseline.rps if baseline.rps > 0 else 0.0 for service, baseline in pairs]

    def ratio(self, route: str) -> float:
        ratios = self.ratios(route)
        return statistics.median(ratios) if ratios else 0.0

    def median(self, route: str, target: str, figure: str) -> float:
        values = [float(getattr(run, figure)) for run in self.runs_of(route, target)]
        return statistics.median(values) if values else 0.0

    def latency(self, route: str, target: str, figure: str) -> float:
        values = [float(getattr(run.wrk, figure)) for run in self.runs_of(route, target)]
        return statistics.median(values) if values else 0.0

    @property
    def requests(self) -> int:
        return sum(run.wrk.requests for run in self.runs)

    @property
    def non_2xx(self) -> int:
        return sum(run.wrk.non_2xx for run in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(run.wrk.socket_errors for run in self.runs)


# --- output ---------------------------------------------------------------------------------------


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio >= target else "MISS"


def tables(report: Report) -> list[str]:
    lines: list[str] = []
    for route in ROUTES:
        title = route.title + (f" ({report.options.users} ids rotating)" if route.key == "get" else "")
        lines += [
            "",
            title,
            f"  {'round':>5}  {'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
            f" {'sock err':>8} {'CPU ms/req':>10} {'srv CPU':>8} {'wrk CPU':>8}",
        ]
        for number in range(1, report.options.rounds + 1):
            for run in (run for run in report.runs if run.route == route.key and run.round == number):
                lines.append(
                    f"  {run.round:>5}  {run.target:<8} {run.rps:>9.1f} {run.wrk.p50_ms:>8.2f}"
                    f" {run.wrk.p99_ms:>8.2f} {run.wrk.non_2xx:>8} {run.wrk.socket_errors:>8}"
                    f" {run.cpu_ms_per_request:>10.3f} {run.cpu_share:>8.0%} {run.wrk_cpu_share:>8.0%}"
                )
        ratios = ", ".join(f"{ratio:.3f}" for ratio in report.ratios(route.key))
        ratio = report.ratio(route.key)
        target = f" (target >= {route.target:g}: {verdict(ratio, route.target)})" if route.target else ""
        lines.append(f"  req/s service/baseline per round: {ratios}; median {ratio:.3f}{target}")
        cpu = [
            service.cpu_ms_per_request / baseline.cpu_ms_per_request if baseline.cpu_ms_per_request else 0.0
            for service, baseline in zip(
                report.runs_of(route.key, "service"), report.runs_of(route.key, "baseline"), strict=True
            )
        ]
        lines.append(
            "  CPU per request service/baseline per round: " + ", ".join(f"{share:.2f}" for share in cpu)
        )
    return lines


def load_lines(options: Options) -> list[str]:
    """The load's settings as summary lines (every API benchmark prints them)."""
    return [
        f"connections={options.connections}",
        f"threads={options.threads}",
        f"duration_s={options.duration}",
        f"warmup_s={options.warmup}",
        f"rounds={options.rounds}",
        f"users={options.users}",
    ]


def summary_lines(report: Report) -> list[str]:
    options = report.options
    lines = [
        *load_lines(options),
        f"pool_size={report.pool[0]}",
        f"max_overflow={report.pool[1]}",
    ]
    for route in ROUTES:
        key = route.key
        lines += [
            f"{key}_service_rps={report.median(key, 'service', 'rps'):.1f}",
            f"{key}_baseline_rps={report.median(key, 'baseline', 'rps'):.1f}",
            f"{key}_ratio={report.ratio(key):.3f}",
            f"{key}_ratios={','.join(f'{ratio:.3f}' for ratio in report.ratios(key))}",
            f"{key}_service_p50_ms={report.latency(key, 'service', 'p50_ms'):.2f}",
            f"{key}_service_p99_ms={report.latency(key, 'service', 'p99_ms'):.2f}",
            f"{key}_baseline_p50_ms={report.latency(key, 'baseline', 'p50_ms'):.2f}",
            f"{key}_baseline_p99_ms={report.latency(key, 'baseline', 'p99_ms'):.2f}",
            f"{key}_service_cpu_ms_per_req={report.median(key, 'service', 'cpu_ms_per_request'):.3f}",
            f"{key}_baseline_cpu_ms_per_req={report.median(key, 'baseline', 'cpu_ms_per_request'):.3f}",
        ]
    lines += [
        f"requests={report.requests}",
        f"non_2xx={report.non_2xx}",
        f"socket_errors={report.socket_errors}",
        f"outbox_row_bytes_service={report.outbox_row_bytes.get('service', 0.0):.1f}",
        f"outbox_row_bytes_baseline={report.outbox_row_bytes.get('baseline', 0.0):.1f}",
        f"service_log_lines={report.logs['service'].lines}",
        f"service_log_errors={len(report.logs['service'].errors)}",
        f"baseline_log_errors={len(report.logs['baseline'].errors)}",
        f"loadavg_1m={report.load[0]:.2f}->{report.load[1]:.2f} on {os.cpu_count()} CPUs",
    ]
    for route in ROUTES:
        if route.target is not None:
            ratio = report.ratio(route.key)
            lines.append(
                f"{route.key}_target={verdict(ratio, route.target)} (service/baseline >= {route.target:g})"
            )
    lines += [f"WARNING: {warning}" for warning in report.warnings]
    return lines


# --- servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def http_call(port: int, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree_cpu_seconds(pid: int) -> float:
    """:func:`process_cpu_seconds` of ``pid`` and of every process below it (uvicorn's workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, its_parent in parents.items() if its_parent == parent]
        tree.update(children)
        frontier.extend(children)
    total = process_cpu_seconds(pid)  # the root must be there: its absence is an error
    for member in tree - {pid}:
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(member)
    return total


STORE_PROCESSES = ("postgres", "redis-server")


def store_cpu_seconds() -> float:
    """CPU of every PostgreSQL and Redis process on this machine (what a read costs beyond the
    server: the database's backends, or Redis)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() in STORE_PROCESSES:
                total += process_cpu_seconds(int(comm.parent.name))
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Server:
    name: str  # service or baseline
    app: str
    ready_path: str
    log_path: Path
    workers: int = 1  # uvicorn processes
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.app,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *UVICORN_FLAGS,
        ]

    def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("wb") as log:
            # A session of its own: Ctrl-C reaches this process, which stops the server in order.
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def failure(self, what: str) -> BenchmarkError:
        tail = log_tail(self.log_path)
        return BenchmarkError(
            f"the {self.name} {what}; its log: {self.log_path}" + (f"\n{tail}" if tail else "")
        )

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise self.failure(f"exited with code {code} before answering GET {self.ready_path}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = await asyncio.to_thread(http_call, self.port, "GET", self.ready_path, None, 1.0)
                if status == 200:
                    return
            if time.monotonic() > deadline:
                raise self.failure(f"did not answer GET {self.ready_path} with 200 within {timeout:g}s")
            await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float:
        try:
            return process_tree_cpu_seconds(self.pid)
        except OSError:
            raise self.failure("is gone") from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE` seconds; this process only, by its id."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                logger.warning("the %s did not stop within %gs of SIGTERM; killing it", self.name, STOP_GRACE)
                process.kill()
                process.wait(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()


def server_env(url: str, options: Options) -> dict[str, str]:
    """The environment as the user has it, plus the benchmark's database and full mode."""
    env = dict(os.environ)
    env["DATABASE_URL"] = url
    env["KAFKA_BOOTSTRAP_SERVERS"] = options.bootstrap
    env["RATE_LIMIT_REGISTRATIONS"] = "0"  # the load comes from one address
    env.setdefault("CACHE_TTL", "0")  # the database path against the baseline's (bench-cache: the cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def scan_log(path: Path) -> LogStats:
    stats = LogStats(path)
    with contextlib.suppress(OSError), path.open(errors="replace") as log:
        for line in log:
            stats.lines += 1
            if LOG_ERROR.search(line):
                stats.errors.append(line.rstrip()[:300])
    return stats


# --- wrk ------------------------------------------------------------------------------------------

LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '$marker{"requests":%d,"duration_us":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,'
      .. '"non_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
"""

LUA_GET = r"""
-- GET /api/v1/users/{id}, rotating over the seeded ids; each wrk thread starts elsewhere.
local ids = {$ids}
local requests = {}
local i = 0
local threads = 0
function setup(thread)
  thread:set("first", threads * 331)
  threads = threads + 1
end
function init(args)
  for k, id in ipairs(ids) do
    requests[k] = wrk.format("GET", "/api/v1/users/" .. id)
  end
  i = (first or 0) % #ids
end
function request()
  i = i % #ids + 1
  return requests[i]
end
"""

LUA_POST = r"""
-- POST /api/v1/users, an email unique per run, target, round, wrk thread and request.
local headers = {["Content-Type"] = "application/json"}
local n = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function request()
  n = n + 1
  local body = '{"email":"$prefix-t' .. (tid or 0) .. 'n' .. n .. '@example.com","name":"Bench User"}'
  return wrk.format("POST", "/api/v1/users", headers, body)
end
"""

LUA_STATIC = r"""
-- the URL's path, the same request every time
"""


def lua_script(body: str, **values: str) -> str:
    return Template(body).substitute(values) + Template(LUA_DONE).substitute(marker=WRK_MARKER)


def parse_wrk(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(WRK_MARKER):
            data = json.loads(line[len(WRK_MARKER) :])
            return WrkResult(
                requests=int(data["requests"]),
                seconds=int(data["duration_us"]) / 1e6,
                p50_ms=float(data["p50_ms"]),
                p99_ms=float(data["p99_ms"]),
                max_ms=float(data["max_ms"]),
                non_2xx=int(data["non_2xx"]),
                socket_errors=sum(int(data[kind]) for kind in ("connect", "read", "write", "timeout")),
            )
    raise BenchmarkError(f"wrk printed no summary:\n{output.strip()[-800:]}")


async def run_wrk(options: Options, script: Path, url: str, seconds: int) -> WrkResult:
    command = [
        options.wrk,
        "--threads",
        str(options.threads),
        "--connections",
        str(options.connections),
        "--duration",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "--script",
        str(script),
        url,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        async with asyncio.timeout(seconds + 30):
            out, err = await process.communicate()
    except TimeoutError:
        raise BenchmarkError(f"wrk did not finish within {seconds + 30}s: {' '.join(command)}") from None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        message = (err or out).decode(errors="replace").strip()[-800:]
        raise BenchmarkError(f"wrk failed (exit code {process.returncode}) against {url}: {message}")
    return parse_wrk(out.decode(errors="replace"))


# --- database -------------------------------------------------------------------------------------


async def seed_users(url: str, count: int, run: str) -> list[str]:
    """``count`` users in the service's own table, valued as ``User.register`` values them (the
    stored version starts at 1); their ids."""
    users = [
        User.register(email=Email.of(f"seed-{run}-{i}@example.com"), name=f"Seed User {i}")
        for i in range(count)
    ]
    rows = [
        {
            "id": user.id,
            "email": str(user.email),
            "name": user.name,
            "status": user.status.value,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
            "version": 1,
        }
        for user in users
    ]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(users_table), rows)
            await connection.execute(text("ANALYZE users"))
    finally:
        await engine.dispose()
    return [str(user.id) for user in users]


async def outbox_row_bytes(url: str, run: str) -> dict[str, float]:
    """Mean bytes of payload + headers of the outbox rows each target's POSTs wrote."""
    engine = create_async_engine(url)
    sizes: dict[str, float] = {}
    try:
        async with engine.connect() as connection:
            for target, tag in EMAIL_TAGS.items():
                mean = await connection.execute(
                    text(
                        "SELECT avg(octet_length(payload::text) + octet_length(headers::text))"
                        " FROM outbox WHERE payload->>'email' LIKE :pattern"
                    ),
                    {"pattern": f"{run}-{tag}-%"},
                )
                sizes[target] = float(mean.scalar() or 0.0)
    finally:
        await engine.dispose()
    return sizes


# --- the measurement ------------------------------------------------------------------------------


async def check_answers(servers: dict[str, Server], user_id: str, run: str) -> list[str]:
    """One GET of a seeded user and one POST on each server: both must succeed; the bodies should
    agree (what differs is returned as warnings)."""
    warnings: list[str] = []
    bodies: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        path = f"/api/v1/users/{user_id}"
        status, body = await asyncio.to_thread(http_call, server.port, "GET", path)
        if status != 200:
            raise server.failure(f"answered GET {path} with {status}: {body[:300]!r}")
        bodies[name] = json.loads(body)
    if bodies["service"] != bodies["baseline"]:
        warnings.append(f"GET bodies differ: service {bodies['service']} baseline {bodies['baseline']}")
    created: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        user = {"email": f"{run}-{EMAIL_TAGS[name]}-check@example.com", "name": "Bench User"}
        status, body = await asyncio.to_thread(http_call, server.port, "POST", "/api/v1/users", user)
        if status != 201:
            raise server.failure(f"answered POST /api/v1/users with {status}: {body[:300]!r}")
        created[name] = json.loads(body)
    service, baseline = created["service"], created["baseline"]
    if set(service) != set(baseline):
        warnings.append(
            f"POST bodies have different fields: service {sorted(service)} baseline {sorted(baseline)}"
        )
    for key in ("name", "status", "version"):
        if service.get(key) != baseline.get(key):
            warnings.append(
                f"POST {key} differs: service {service.get(key)!r} baseline {baseline.get(key)!r}"
            )
    return warnings


async def measure(options: Options, server: Server, route: str, number: int, scripts: Scripts) -> Run:
    if options.warmup:
        warm = scripts.path(route, server.name, number, warm=True)
        await run_wrk(options, warm, route_url(server, route), options.warmup)
    script = scripts.path(route, server.name, number, warm=False)
    wrk_cpu, cpu, store = children_cpu_seconds(), server.cpu_seconds(), store_cpu_seconds()
    result = await run_wrk(options, script, route_url(server, route), options.duration)
    cpu, wrk_cpu = server.cpu_seconds() - cpu, children_cpu_seconds() - wrk_cpu
    store = store_cpu_seconds() - store
    return Run(
        route=route, target=server.name, round=number, wrk=result, cpu=cpu, wrk_cpu=wrk_cpu, store_cpu=store
    )


@dataclass
class Scripts:
    """The Lua scripts of one benchmark run, written into its temp directory."""

    directory: Path
    run: str
    ids: list[str]

    def path(self, route: str, target: str, number: int, *, warm: bool) -> Path:
        if route == "get":
            name, body = "get.lua", lua_script(LUA_GET, ids=", ".join(f'"{i}"' for i in self.ids))
        elif route == "post":
            phase = "w" if warm else "m"
            prefix = f"{self.run}-{EMAIL_TAGS[target]}-r{number}{phase}"
            name, body = f"post-{target}-{number}{phase}.lua", lua_script(LUA_POST, prefix=prefix)
        else:
            name, body = f"health-{target}.lua", lua_script(LUA_STATIC)
        path = self.directory / name
        if not path.exists():
            path.write_text(body)
        return path


def route_url(server: Server, route: str) -> str:
    return server.url + (HEALTH_PATHS[server.name] if route == "health" else "")


async def run_benchmark(options: Options, *, out: TextIO | None = None) -> Report:
    """Every pair, on a database of its own that is dropped at the end."""

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out, flush=True)

    wrk = shutil.which(options.wrk)
    if wrk is None:
        raise BenchmarkError(
            f"wrk ({options.wrk}) is not installed: it is the load generator of this benchmark;"
            " install it with `apt-get install wrk` (Debian; scripts/services.sh up does it when root)"
        )
    options = dataclasses.replace(options, wrk=wrk)
    try:
        settings = Settings()
    except ValidationError as error:
        raise BenchmarkError(f"the service's settings (environment) are not valid: {error}") from None
    pool = (settings.database.pool_size, settings.database.max_overflow)
    run = uuid.uuid4().hex[:8]
    runs_total = options.rounds * len(ROUTES) * len(TARGETS)
    say(
        f"api benchmark {run}: wrk {options.connections} connections, {options.threads} thread(s)"
        f" (the load generator must not starve the server on {os.cpu_count()} CPUs),"
        f" {runs_total} runs of {options.duration}s after {options.warmup}s warm-up"
        f" (about {runs_total * (options.duration + options.warmup) // 60 + 1} min)"
    )
    say(
        f"servers: uvicorn --workers {options.workers} {' '.join(UVICORN_FLAGS)};"
        f" pool {pool[0]} + {pool[1]} overflow"
        f" (baseline: asyncpg min_size={pool[0]}, max_size={sum(pool)}); service in full mode"
        f" (KAFKA_BOOTSTRAP_SERVERS={options.bootstrap}, no worker), LOG_LEVEL={settings.log_level},"
        f" LOG_JSON={str(settings.log_json).lower()}"
    )
    load_before = os.getloadavg()[0]
    url = await create_database(options.database_admin_url)
    database = make_url(url).database or ""
    say(f"database {database} created and migrated")
    directory = Path(tempfile.mkdtemp(prefix=f"bench-api-{run}-"))
    servers = {
        "service": Server(
            "service",
            SERVICE_APP,
            HEALTH_PATHS["service"],
            directory / "service.log",
            workers=options.workers,
        ),
        "baseline": Server(
            "baseline",
            BASELINE_APP,
            HEALTH_PATHS["baseline"],
            directory / "baseline.log",
            workers=options.workers,
        ),
    }
    runs: list[Run] = []
    keep = options.keep_logs
    try:
        ids = await seed_users(url, options.users, run)
        say(f"{len(ids)} users seeded")
        env = server_env(url, options)
        for server in servers.values():
            server.start(env)
        for server in servers.values():
            await server.wait_ready(options.startup_timeout)
        say(
            f"service pid {servers['service'].pid} on {servers['service'].url},"
            f" baseline pid {servers['baseline'].pid} on {servers['baseline'].url}; logs in {directory}"
        )
        warnings = await check_answers(servers, ids[0], run)
        scripts = Scripts(directory, run, ids)
        for number in range(1, options.rounds + 1):
            for index, route in enumerate(ROUTES):
                first, second = servers["service"], servers["baseline"]
                order = (first, second) if (number + index) % 2 else (second, first)
                for server in order:
                    result = await measure(options, server, route.key, number, scripts)
                    runs.append(result)
                    say(
                        f"[{number}] {route.key:<6} {server.name:<8} {result.rps:8.1f} req/s,"
                        f" p50 {result.wrk.p50_ms:.2f} ms, p99 {result.wrk.p99_ms:.2f} ms,"
                        f" {result.cpu_ms_per_request:.3f} ms CPU/req, non-2xx {result.wrk.non_2xx},"
                        f" socket errors {result.wrk.socket_errors}"
                    )
        sizes = await outbox_row_bytes(url, run)
    except BaseException:
        keep = True
        raise
    finally:
        for server in servers.values():
            server.stop()
        try:
            await drop_database(options.database_admin_url, url)
            say(f"database {database} dropped")
        finally:
            logs = {name: scan_log(server.log_path) for name, server in servers.items()}
            keep = keep or any(stats.errors for stats in logs.values())
            if keep:
                say(f"server logs kept: {', '.join(str(stats.path) for stats in logs.values())}")
            else:
                shutil.rmtree(directory, ignore_errors=True)
    for name, stats in logs.items():
        for line in stats.errors[:5]:
            say(f"{name} log: {line}")
    return Report(
        options=options,
        database=database,
        pool=pool,
        runs=runs,
        outbox_row_bytes=sizes,
        logs=logs,
        warnings=warnings,
        load=(load_before, os.getloadavg()[0]),
    )


# --- command line ---------------------------------------------------------------------------------


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


def argument_parser(
    prog: str = "python -m bench.api_throughput", description: str | None = None
) -> argparse.ArgumentParser:
    """The options of :class:`Options`; another benchmark adds its own (bench.cache_throughput)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description if description is not None else (__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--connections", type=positive_int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="wrk threads (1: on a 2-core machine more would starve the server being measured)",
    )
    parser.add_argument("--duration", type=positive_int, default=10, help="seconds measured per run (10)")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=2, help="seconds of unmeasured load before each run (2)"
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="pairs per path (service and baseline, back to back); the median ratio counts (3)",
    )
    parser.add_argument("--users", type=positive_int, default=1000, help="users seeded for the GETs (1000)")
    parser.add_argument(
        "--database-admin-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL of a role that may CREATE DATABASE (TEST_DATABASE_URL, else the tests' default)",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092",
        help="KAFKA_BOOTSTRAP_SERVERS given to the service (full mode); the API never connects to it",
    )
    parser.add_argument("--wrk", default="wrk", help="the wrk executable (wrk on PATH)")
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="uvicorn worker processes per server (1)"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' logs and wrk scripts (temp directory)"
    )
    return parser


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Options:
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections (each wrk thread needs a connection)")
    return Options(
        connections=args.connections,
        threads=args.threads,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        users=args.users,
        database_admin_url=args.database_admin_url,
        bootstrap=args.bootstrap,
        wrk=args.wrk,
        keep_logs=args.keep_logs,
        workers=args.workers,
    )


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argument_parser()
    return options_from(parser, parser.parse_args(argv))


async def print_report(run: Awaitable[R], lines: Callable[[R], Iterable[str]]) -> int:
    """Run a benchmark and print its report (0), or say why it could not measure (1)."""
    try:
        report = await run
    except BenchmarkError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    for line in lines(report):
        print(line)
    return 0


async def amain(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    return await print_report(
        run_benchmark(options, out=sys.stdout),
        lambda report: [*tables(report), "--- summary ---", *summary_lines(report)],
    )


def run_until_interrupted(run: Callable[[], Awaitable[int]], cleaned_up: str) -> int:
    """``asyncio.run(run())``, cancelled by SIGTERM as by Ctrl-C so that the benchmark's own
    cleanup runs; 130 then, after saying what was ``cleaned_up``."""

    async def until_sigterm() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run()

    try:
        return asyncio.run(until_sigterm())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"bench: interrupted; {cleaned_up}", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_until_interrupted(lambda: amain(argv), "the servers were stopped and the database dropped")


if __name__ == "__main__":
    sys.exit(main())
