"""The proof with real parts: Debian's Prometheus scrapes the API under gunicorn (2 workers) and the
worker, after a load that touches every instrumented path, and every PromQL expression of every
dashboard panel, template variable, data-source link and rule is executed against it.

The load: registrations (the last one over the limit: 429), reads (200 and 404; cached in
Redis), a list, a conditional update, a stale update (412),
invalid input (400), an unknown path, a message delivered twice (an inbox duplicate) and a poison
message (retried, then dead-lettered), all through the real API, outbox relay, Kafka and consumer.
A parse error or any refused expression fails; an empty result fails unless the expression only
selects what this load cannot produce without breaking the service (listed with the reason).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.conftest import ROOT, free_port, gunicorn_server
from tests.helpers import unique_email
from tests.messaging_harness import settings_for, worker
from tests.observability_promql import (
    Expression,
    datasource_expressions,
    metric_names,
    panel_expressions,
    rule_expressions,
    run_all,
    variable_expressions,
)
from tests.redis_service import unique_prefix
from tests.services import missing

PROMETHEUS_SH = ROOT / "scripts" / "prometheus.sh"
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"

# Panels and recorded series a healthy service under this load leaves empty, each with why: they
# need a fault of the service, which the fault tests cause (test_relay_kafka_faults, the outage tests).
EMPTY_WITHOUT_A_FAULT = {
    ("grafana/dashboards/mediator.json", "Failed by request type"): "no request failed (a 5xx)",
    ("grafana/dashboards/messaging.json", "Publish failures by topic and kind"): "no send failed",
    ("grafana/dashboards/database.json", "Cache errors by operation"): "Redis answered",
    ("prometheus/rules/recording.yml", "service:app_http_server_errors:rate5m"): "no 5xx",
    ("prometheus/rules/recording.yml", "service:app_http_server_errors:ratio_rate5m"): "no 5xx",
}
# What those recorded series are made of: an alert built on them is checked down to these.
FAULT_SERIES = {"service:app_http_server_errors:rate5m", "service:app_http_server_errors:ratio_rate5m"}


def every_expression() -> list[Expression]:
    return [
        *panel_expressions(DASHBOARDS_DIR),
        *variable_expressions(DASHBOARDS_DIR),
        *rule_expressions(RULES_DIR),
        *datasource_expressions(DATASOURCES_FILE),
    ]


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )


@pytest.fixture(scope="module")
def prometheus_tools() -> None:
    for tool in ("prometheus", "promtool"):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
            missing(tool, "scripts/prometheus.sh install (Debian's prometheus package)")


def scrape_config(api: str, worker_address: str, port: int) -> dict[str, Any]:
    """prometheus/prometheus.yml as it is, with its api and worker jobs pointed at the processes
    started here, the repository's rules, and 1 s intervals."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(PROMETHEUS_YML.read_text()))
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    addresses = {"api": api, "worker": worker_address}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [addresses.get(job["job_name"], f"127.0.0.1:{port}")]
    return config


# The load's POSTs: 20 registrations and one invalid body pass, the next one is over the limit.
REGISTRATIONS_LIMIT = "21/minute"


@pytest.fixture
def gunicorn_api(database: str, bootstrap: str, topic: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The API under gunicorn with 2 workers, in full mode on the test's topic, reads cached in
    Redis and registrations limited; host:port."""
    with gunicorn_server(
        database,
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        TOPIC_OVERRIDES=json.dumps({"user": topic}),
        METRICS_SAMPLE_INTERVAL="1",
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=unique_prefix(),
        RATE_LIMIT_REGISTRATIONS=REGISTRATIONS_LIMIT,
    ) as url:
        yield url.removeprefix("http://")


async def load(api: str, bootstrap: str, topic: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{api}", timeout=10) as http:
        created = []
        for index in range(20):
            response = await http.post(
                "/api/v1/users", json={"email": unique_email(f"proof{index}"), "name": "P"}
            )
            assert response.status_code == 201, response.text
            created.append(response)
        location = created[0].headers["location"]
        fetched = await http.get(location)
        assert fetched.status_code == 200
        assert (await http.get(location)).status_code == 200  # a cache miss, then hits
        assert (await http.get(location)).status_code == 200
        assert (await http.get("/api/v1/users", params={"limit": 5})).status_code == 200
        updated = await http.patch(
            location, json={"name": "Q"}, headers={"If-Match": fetched.headers["etag"]}
        )
        assert updated.status_code == 200, updated.text
        assert (
            await http.patch(location, json={"name": "R"}, headers={"If-Match": '"1"'})
        ).status_code == 412
        assert (await http.get(f"/api/v1/users/{uuid.uuid4()}")).status_code == 404
        assert (await http.post("/api/v1/users", json={"email": "not an email"})).status_code == 400
        over = await http.post("/api/v1/users", json={"email": unique_email("over"), "name": "P"})
        assert over.status_code == 429, over.text
        assert (await http.get("/no/such/route")).status_code == 404
        assert (await http.get("/health/ready")).status_code == 200
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Poison: a registered event whose payload cannot be read: retried, then dead-lettered.
        await producer.send_and_wait(
            topic,
            b"{}",
            key=b"poison",
            headers=[
                ("ce_id", str(uuid.uuid4()).encode()),
                ("ce_type", b"users.user_registered.v1"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
        )
    finally:
        await producer.stop()


async def redeliver_one(bootstrap: str, topic: str) -> None:
    """A message the consumer already handled, sent again: the inbox skips it as a duplicate."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000, max_records=100)
        record = next(record for records in batch.values() for record in records if record.key != b"poison")
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, record.value, key=record.key, headers=list(record.headers))
    finally:
        await producer.stop()


def query(http: httpx.Client, url: str, expr: str) -> list[dict[str, Any]]:
    body = http.post(f"{url}/api/v1/query", data={"query": expr}).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_until(http: httpx.Client, url: str, expr: str, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not query(http, url, expr):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: `{expr}` still empty after {timeout:g}s")
        time.sleep(0.5)


class _WebhookEndpoint(BaseHTTPRequestHandler):
    """The worker's webhook endpoint: the first POST gets a 503 (retried), the third a 400 (the
    event is dead-lettered), every other a 204 — each outcome the dashboards show."""

    posts = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            type(self).posts += 1
            number = type(self).posts
        status = {1: 503, 3: 400}.get(number, 204)
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def webhook_endpoint() -> Iterator[str]:
    """A real HTTP endpoint for the worker's webhooks, on a free port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebhookEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def test_every_dashboard_and_rule_expression_runs_against_the_scraped_service(
    prometheus_tools: None,
    gunicorn_api: str,
    webhook_endpoint: str,
    database: str,
    bootstrap: str,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics_port, prometheus_port = free_port(), free_port()
    settings = settings_for(database, bootstrap, topic)
    worker_env = {
        "WORKER_METRICS_PORT": str(metrics_port),
        "METRICS_SAMPLE_INTERVAL": "1",
        "WEBHOOK_URL": webhook_endpoint,
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(32))).decode(),
        "EXTERNAL_APIS__WEBHOOKS__RETRY_BASE_DELAY": "0.05",
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(scrape_config(gunicorn_api, f"127.0.0.1:{metrics_port}", prometheus_port))
    )
    data = tmp_path / "prometheus"
    url = f"http://127.0.0.1:{prometheus_port}"
    with (
        worker(settings, tmp_path / "worker.log", **worker_env),
        httpx.Client(timeout=10, trust_env=False) as http,
    ):
        started = run(PROMETHEUS_SH, "up", config, str(prometheus_port), data)
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            # The webhook consumer's group starts at the topic's end: load once it has its partitions.
            wait_until(
                http,
                url,
                'count(app_consumer_lag{consumer="webhooks"}) > 0',
                "the webhook consumer's partitions",
            )
            asyncio.run(load(gunicorn_api, bootstrap, topic))
            wait_until(
                http, url, 'app_consumer_messages_total{outcome="handled"} > 0', "the consumer's projections"
            )
            asyncio.run(redeliver_one(bootstrap, topic))
            for outcome in ("duplicate", "dead_lettered"):
                wait_until(http, url, f'app_consumer_messages_total{{outcome="{outcome}"}} > 0', outcome)
            wait_until(
                http,
                url,
                'app_consumer_messages_total{consumer="webhooks", outcome="dead_lettered"} > 0',
                "a refused webhook",
            )
            wait_until(
                http, url, 'count(app_process_resident_memory_bytes{job="api"}) == 2', "both gunicorn workers"
            )
            time.sleep(6)  # rate() over the substituted 1m window needs points after the load
            expressions = every_expression()
            report = run_all(url, expressions, client=http)
            # An alert that does not fire is empty: what it watches must be there all the same.
            watched = {
                (str(alert), name): bool(query(http, url, f"count({name})"))
                for alert in report.empty
                if alert.ref_id == "alert"
                for name in metric_names(alert.expr) - FAULT_SERIES
            }
        finally:
            stopped = run(PROMETHEUS_SH, "down", data)
    with capsys.disabled():  # in the CI log, whatever the outcome
        print(f"\nexecuted {len(expressions)} PromQL expressions against the scraped service:")
        print(report.summary())
    assert stopped.returncode == 0, stopped.stderr
    assert report.parse_errors == [], report.summary()
    assert report.errors == [], report.summary()
    assert all(watched.values()), [
        f"{alert}: no series {name}" for (alert, name), found in watched.items() if not found
    ]
    unexplained = [
        expression
        for expression in report.empty
        if expression.ref_id != "alert" and (expression.source, expression.title) not in EMPTY_WITHOUT_A_FAULT
    ]
    assert unexplained == [], "\n".join(str(expression) for expression in unexplained)
    assert len(report.ok) + len(report.empty) == len(expressions)
