"""Grafana dashboards as code: ``python3 scripts/dashboards.py`` writes grafana/dashboards/*.json.

The JSON files are committed and are what Grafana provisions (grafana/provisioning/dashboards); this
script is where they are edited. ``--check`` writes nothing and exits 1 when a committed file differs
from what the script writes, or when grafana/dashboards holds a dashboard it does not write (the test
suite makes the same comparison). Standard library only.

Every query filters on the two template variables every dashboard has, ``$service``
(``label_values(app_info, service)``) and ``$instance`` (the targets of the chosen services), and
uses the data source whose uid is ``prometheus`` (grafana/provisioning/datasources). The series are
the service's contract (tests/observability_contract.py; docs/OBSERVABILITY.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "grafana" / "dashboards"

SERVICE_NAME = "user-service"
TAG = SERVICE_NAME
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39

# The label matchers of every selector: the dashboard's two variables.
SCOPE = 'service=~"$service", instance=~"$instance"'
RATE = "$__rate_interval"

Json = dict[str, object]


def sel(metric: str, *matchers: str) -> str:
    """``metric{service=~"$service", instance=~"$instance", <matchers>}``."""
    return metric + "{" + ", ".join((SCOPE, *matchers)) + "}"


def rate(metric: str, *matchers: str, window: str = RATE) -> str:
    return f"rate({sel(metric, *matchers)}[{window}])"


def quantile(q: float, histogram: str, by: str = "") -> str:
    """``histogram_quantile`` over the rate of a histogram's buckets, per ``by`` labels."""
    labels = ", ".join(label for label in ("le", by) if label)
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram + '_bucket')}))"


def ratio_or_zero(numerator: str, denominator: str, by: str = "") -> str:
    """``numerator / denominator`` per ``by``; 0 rather than no data where the numerator is absent
    (no 5xx at all is a ratio of 0, not a gap in the graph)."""
    group = f" by ({by}) " if by else ""
    top = f"sum{group}({numerator})"
    bottom = f"sum{group}({denominator})"
    zero = f"{bottom} * 0" if by else "vector(0)"
    return f"({top} or {zero}) / {bottom}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    exemplar: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table
    width: int = 12
    height: int = 8
    min: float | None = 0
    max: float | None = None
    bars: bool = False
    thresholds: tuple[tuple[float, str], ...] = ()  # (from, color) above the base green

    def __post_init__(self) -> None:
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no query")


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    slug: str  # file name without .json
    title: str
    description: str
    rows: tuple[Row, ...]
    links: tuple[str, ...] = field(default=())


def ts(
    title: str,
    description: str,
    *queries: Query,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    min: float | None = 0,
    max: float | None = None,
    bars: bool = False,
) -> Panel:
    """A time series panel."""
    return Panel(title, description, queries, unit, "timeseries", width, height, min, max, bars)


def stat(
    title: str,
    description: str,
    query: Query,
    unit: str = "short",
    thresholds: tuple[tuple[float, str], ...] = (),
    min: float | None = 0,
) -> Panel:
    """A single-value panel (the last value, with a sparkline), a quarter of the width."""
    return Panel(title, description, (query,), unit, "stat", 6, 4, min, thresholds=thresholds)


# --- the dashboards ----------------------------------------------------------------------------------

HTTP_REQUESTS = "app_http_requests_total"
HTTP_DURATION = "app_http_request_duration_seconds"
MEDIATOR_REQUESTS = "app_mediator_requests_total"
MEDIATOR_DURATION = "app_mediator_request_duration_seconds"
CONSUMER_MESSAGES = "app_consumer_messages_total"
CLIENT_ERROR = 'status=~"4.."'
SERVER_ERROR = 'status=~"5.."'
CALLS = "app_http_client_requests_total"
CALL_DURATION = "app_http_client_request_duration_seconds"
CIRCUIT_OPEN = "app_http_client_circuit_open"
WEBHOOKS = 'consumer="webhooks"'
HANDLED = 'outcome="handled"'
DUPLICATE = 'outcome="duplicate"'
DEAD_LETTERED = 'outcome="dead_lettered"'
API_PROCESS = 'pid!=""'  # a gunicorn worker of the API (multiprocess mode adds pid)


def overview() -> Dashboard:
    all_requests = rate(HTTP_REQUESTS)
    server_errors = rate(HTTP_REQUESTS, SERVER_ERROR)
    return Dashboard(
        uid=f"{SERVICE_NAME}-overview",
        slug="service-overview",
        title=f"{SERVICE_NAME} / Service overview",
        description="HTTP traffic, errors and latency (RED) of the API, by route template.",
        rows=(
            Row(
                "Golden signals",
                (
                    stat(
                        "Request rate",
                        "HTTP requests per second, every handler.",
                        Query(f"sum({all_requests})"),
                        unit="reqps",
                    ),
                    stat(
                        "5xx ratio",
                        "Share of the requests answered with a 5xx status.",
                        Query(ratio_or_zero(server_errors, all_requests)),
                        unit="percentunit",
                        thresholds=((0.01, "yellow"), (0.05, "red")),
                    ),
                    stat(
                        "p99 latency",
                        "99th percentile of the request duration, every handler.",
                        Query(quantile(0.99, HTTP_DURATION)),
                        unit="s",
                        thresholds=((0.5, "yellow"), (1.0, "red")),
                    ),
                    stat(
                        "Targets up",
                        "Scrape targets of the chosen services that answer their /metrics.",
                        Query(f"sum({sel('up')})"),
                    ),
                ),
            ),
            Row(
                "Traffic and errors by handler",
                (
                    ts(
                        "Request rate by handler",
                        "Requests per second per route template (`none`: no route matched).",
                        Query(f"sum by (handler) ({all_requests})", "{{handler}}"),
                        unit="reqps",
                    ),
                    ts(
                        "Request rate by status",
                        "Requests per second per HTTP status code.",
                        Query(f"sum by (status) ({all_requests})", "{{status}}"),
                        unit="reqps",
                    ),
                    ts(
                        "5xx ratio by handler",
                        "Share of each handler's requests answered with a 5xx status (the alert "
                        "HttpErrorRatioHigh fires above 5 % per service).",
                        Query(ratio_or_zero(server_errors, all_requests, by="handler"), "{{handler}}"),
                        unit="percentunit",
                        max=1,
                    ),
                    ts(
                        "Client errors (4xx) by handler and status",
                        "Requests per second answered with a 4xx status: refused input, missing "
                        "resources, conflicts.",
                        Query(
                            f"sum by (handler, status) ({rate(HTTP_REQUESTS, CLIENT_ERROR)})",
                            "{{handler}} {{status}}",
                        ),
                        unit="reqps",
                    ),
                ),
            ),
            Row(
                "Latency",
                (
                    ts(
                        "Latency by handler (p50 / p95 / p99)",
                        "Quantiles of the request duration per route template. The dots are "
                        "exemplars: a click opens the trace of that request in Tempo.",
                        Query(quantile(0.5, HTTP_DURATION, by="handler"), "p50 {{handler}}"),
                        Query(quantile(0.95, HTTP_DURATION, by="handler"), "p95 {{handler}}"),
                        Query(quantile(0.99, HTTP_DURATION, by="handler"), "p99 {{handler}}", exemplar=True),
                        unit="s",
                        width=24,
                        height=10,
                    ),
                    ts(
                        "Latency, every handler (p50 / p95 / p99)",
                        "Quantiles of the request duration over all handlers, with exemplars.",
                        Query(quantile(0.5, HTTP_DURATION), "p50"),
                        Query(quantile(0.95, HTTP_DURATION), "p95"),
                        Query(quantile(0.99, HTTP_DURATION), "p99", exemplar=True),
                        unit="s",
                    ),
                    ts(
                        "Mean latency by handler",
                        "Total time spent divided by the number of requests, per route template.",
                        Query(
                            f"sum by (handler) ({rate(HTTP_DURATION + '_sum')})"
                            f" / sum by (handler) ({rate(HTTP_DURATION + '_count')})",
                            "{{handler}}",
                        ),
                        unit="s",
                    ),
                ),
            ),
            Row(
                "Build",
                (
                    Panel(
                        "Running versions",
                        "The version each scraped process reports (app_info).",
                        (Query(f"max by (service, instance, version) ({sel('app_info')})"),),
                        kind="table",
                        width=24,
                        height=6,
                    ),
                ),
            ),
        ),
    )


def mediator() -> Dashboard:
    every = rate(MEDIATOR_REQUESTS)
    failed = rate(MEDIATOR_REQUESTS, 'outcome="failed"')
    rejected = rate(MEDIATOR_REQUESTS, 'outcome="rejected"')
    return Dashboard(
        uid=f"{SERVICE_NAME}-mediator",
        slug="mediator",
        title=f"{SERVICE_NAME} / Mediator",
        description="Commands and queries sent through the mediator, in the API and in the worker: "
        "rate, outcome (rejected = a business rule said no; failed = anything else) and duration.",
        rows=(
            Row(
                "Throughput",
                (
                    stat(
                        "Requests/s", "Commands and queries per second.", Query(f"sum({every})"), unit="ops"
                    ),
                    stat(
                        "Failed ratio",
                        "Share of the requests that failed (not a business refusal).",
                        Query(ratio_or_zero(failed, every)),
                        unit="percentunit",
                        thresholds=((0.001, "yellow"), (0.01, "red")),
                    ),
                    stat(
                        "Rejected ratio",
                        "Share of the requests a business rule refused (a domain error).",
                        Query(ratio_or_zero(rejected, every)),
                        unit="percentunit",
                    ),
                    stat(
                        "p99 duration",
                        "99th percentile of the handling time, every request type.",
                        Query(quantile(0.99, MEDIATOR_DURATION)),
                        unit="s",
                    ),
                    ts(
                        "Requests by request type",
                        "Requests per second per command or query type.",
                        Query(f"sum by (request_type) ({every})", "{{request_type}}"),
                        unit="ops",
                    ),
                    ts(
                        "Commands and queries",
                        "Requests per second per kind.",
                        Query(f"sum by (kind) ({every})", "{{kind}}"),
                        unit="ops",
                    ),
                ),
            ),
            Row(
                "Outcomes",
                (
                    ts(
                        "Rejected by request type",
                        "Business refusals per second (domain errors: conflicts, invalid state).",
                        Query(f"sum by (request_type) ({rejected})", "{{request_type}}"),
                        unit="ops",
                    ),
                    ts(
                        "Failed by request type",
                        "Failures per second (infrastructure, bugs): each one has an error log and a trace.",
                        Query(f"sum by (request_type) ({failed})", "{{request_type}}"),
                        unit="ops",
                    ),
                    ts(
                        "Outcomes by request type",
                        "Requests per second per request type and outcome.",
                        Query(f"sum by (request_type, outcome) ({every})", "{{request_type}} {{outcome}}"),
                        unit="ops",
                        width=24,
                    ),
                ),
            ),
            Row(
                "Duration",
                (
                    ts(
                        "Duration by request type (p50 / p95 / p99)",
                        "Quantiles of the handling time per request type (behaviours and "
                        "transaction included).",
                        Query(quantile(0.5, MEDIATOR_DURATION, by="request_type"), "p50 {{request_type}}"),
                        Query(quantile(0.95, MEDIATOR_DURATION, by="request_type"), "p95 {{request_type}}"),
                        Query(quantile(0.99, MEDIATOR_DURATION, by="request_type"), "p99 {{request_type}}"),
                        unit="s",
                    ),
                    ts(
                        "Mean duration by request type",
                        "Total handling time divided by the number of requests.",
                        Query(
                            f"sum by (request_type) ({rate(MEDIATOR_DURATION + '_sum')})"
                            f" / sum by (request_type) ({rate(MEDIATOR_DURATION + '_count')})",
                            "{{request_type}}",
                        ),
                        unit="s",
                    ),
                ),
            ),
        ),
    )


def messaging() -> Dashboard:
    dead_lettered = sel(CONSUMER_MESSAGES, DEAD_LETTERED)
    failing_calls = rate(CALLS, 'outcome=~"5xx|error"')
    return Dashboard(
        uid=f"{SERVICE_NAME}-messaging",
        slug="messaging",
        title=f"{SERVICE_NAME} / Messaging",
        description="The outbox relay (backlog, age, parked rows, publishing) and the consumers "
        "(handled, duplicates, retries, dead letters, pauses, lag).",
        rows=(
            Row(
                "Outbox",
                (
                    stat(
                        "Backlog",
                        "Unpublished rows that are not parked (the largest a relay reports).",
                        Query(f"max({sel('app_outbox_backlog')})"),
                    ),
                    stat(
                        "Oldest unpublished row",
                        "Age of the oldest unpublished row (0 when none); the alert OutboxStalled "
                        "fires above 2 minutes.",
                        Query(f"max({sel('app_outbox_oldest_unpublished_age_seconds')})"),
                        unit="s",
                        thresholds=((30, "yellow"), (120, "red")),
                    ),
                    stat(
                        "Parked rows",
                        "Rows that can never be sent as they are: retry or discard them with a reason.",
                        Query(f"max({sel('app_outbox_parked')})"),
                        thresholds=((1, "red"),),
                    ),
                    stat(
                        "Published/s",
                        "Rows published per second.",
                        Query(f"sum({rate('app_outbox_published_total')})"),
                        unit="ops",
                    ),
                    ts(
                        "Backlog",
                        "Unpublished, not parked rows per relay instance.",
                        Query(f"max by (instance) ({sel('app_outbox_backlog')})", "{{instance}}"),
                        width=8,
                    ),
                    ts(
                        "Oldest unpublished row age",
                        "How long the oldest unpublished row has waited.",
                        Query(
                            f"max by (instance) ({sel('app_outbox_oldest_unpublished_age_seconds')})",
                            "{{instance}}",
                        ),
                        unit="s",
                        width=8,
                    ),
                    ts(
                        "Parked rows",
                        "Rows parked (each holds back only its own aggregate).",
                        Query(f"max by (instance) ({sel('app_outbox_parked')})", "{{instance}}"),
                        width=8,
                    ),
                    ts(
                        "Published by topic",
                        "Rows published per second per topic.",
                        Query(f"sum by (topic) ({rate('app_outbox_published_total')})", "{{topic}}"),
                        unit="ops",
                    ),
                    ts(
                        "Publish failures by topic and kind",
                        "Failed sends per second: unavailable (broker down, retried), refused (the "
                        "broker said no), error (anything else).",
                        Query(
                            f"sum by (topic, kind) ({rate('app_outbox_publish_failures_total')})",
                            "{{topic}} {{kind}}",
                        ),
                        unit="ops",
                    ),
                ),
            ),
            Row(
                "Consumers",
                (
                    stat(
                        "Dead-lettered in range",
                        "Messages sent to a dead-letter topic over the dashboard's time range.",
                        Query(f"sum(increase({dead_lettered}[$__range]))"),
                        thresholds=((1, "red"),),
                    ),
                    stat(
                        "Largest lag",
                        "Messages behind the high watermark, the most-behind consumer and topic.",
                        Query(f"max(sum by (consumer, topic) ({sel('app_consumer_lag')}))"),
                        thresholds=((100, "yellow"), (1000, "red")),
                    ),
                    stat(
                        "Paused consumers",
                        "Consumers paused for an outage or a retry.",
                        Query(f"sum(max by (consumer) ({sel('app_consumer_paused')}))"),
                        thresholds=((1, "yellow"),),
                    ),
                    stat(
                        "Handled/s",
                        "Messages handled per second, every consumer.",
                        Query(f"sum({rate(CONSUMER_MESSAGES, HANDLED)})"),
                        unit="ops",
                    ),
                    ts(
                        "Messages by consumer and outcome",
                        "Messages per second: handled, duplicate (already in the inbox), dead_lettered.",
                        Query(
                            f"sum by (consumer, outcome) ({rate(CONSUMER_MESSAGES)})",
                            "{{consumer}} {{outcome}}",
                        ),
                        unit="ops",
                    ),
                    ts(
                        "Handled by consumer and topic",
                        "Messages handled per second.",
                        Query(
                            f"sum by (consumer, topic) ({rate(CONSUMER_MESSAGES, HANDLED)})",
                            "{{consumer}} {{topic}}",
                        ),
                        unit="ops",
                    ),
                    ts(
                        "Duplicates by consumer",
                        "Messages the inbox had already seen (sent twice by the relay, or replayed).",
                        Query(
                            f"sum by (consumer, topic) ({rate(CONSUMER_MESSAGES, DUPLICATE)})",
                            "{{consumer}} {{topic}}",
                        ),
                        unit="ops",
                    ),
                    ts(
                        "Dead-lettered by consumer and topic",
                        "Messages sent to <topic>.dlq per interval (with the error in their headers; "
                        "replayable).",
                        Query(
                            f"sum by (consumer, topic) (increase({dead_lettered}[{RATE}]))",
                            "{{consumer}} {{topic}}",
                        ),
                        bars=True,
                    ),
                    ts(
                        "Retries by consumer and reason",
                        "Retries per second: poison (the message fails) or outage (something the "
                        "consumer owns is down).",
                        Query(
                            f"sum by (consumer, reason) ({rate('app_consumer_retries_total')})",
                            "{{consumer}} {{reason}}",
                        ),
                        unit="ops",
                    ),
                    ts(
                        "Paused",
                        "1 while a consumer is paused for an outage or a retry.",
                        Query(
                            f"max by (instance, consumer) ({sel('app_consumer_paused')})",
                            "{{consumer}} {{instance}}",
                        ),
                        max=1,
                    ),
                    ts(
                        "Lag by consumer and topic",
                        "Messages behind the high watermark, summed over partitions.",
                        Query(
                            f"sum by (consumer, topic) ({sel('app_consumer_lag')})",
                            "{{consumer}} {{topic}}",
                        ),
                        width=24,
                    ),
                ),
            ),
            Row(
                "Webhooks and calls to other services",
                (
                    stat(
                        "Open circuits",
                        "Targets whose circuit breaker keeps calls from them now (open or half-open).",
                        Query(f"sum({sel(CIRCUIT_OPEN)})"),
                        thresholds=((1, "red"),),
                    ),
                    stat(
                        "Calls failing",
                        "Attempts that got a 5xx or no answer, per second, every target.",
                        Query(f"sum({failing_calls})"),
                        unit="ops",
                        thresholds=((0.1, "yellow"),),
                    ),
                    stat(
                        "Call p99",
                        "99th percentile of a call's time, retries and waits included, every target.",
                        Query(quantile(0.99, CALL_DURATION)),
                        unit="s",
                    ),
                    stat(
                        "Webhooks dead-lettered",
                        "Events the webhook endpoint refused (4xx) or did not take within WEBHOOK_MAX_AGE, "
                        "over the dashboard's range.",
                        Query(f"sum(increase({sel(CONSUMER_MESSAGES, WEBHOOKS, DEAD_LETTERED)}[$__range]))"),
                        thresholds=((1, "red"),),
                    ),
                    ts(
                        "Calls by target and outcome",
                        "Attempts per second: 2xx..5xx, error (no answer: refused, reset, timed out), "
                        "circuit_open (not sent: the target's breaker was open).",
                        Query(f"sum by (target, outcome) ({rate(CALLS)})", "{{target}} {{outcome}}"),
                        unit="ops",
                    ),
                    ts(
                        "Call duration by target",
                        "p50 and p99 of a call, retries and their waits included.",
                        Query(quantile(0.5, CALL_DURATION, "target"), "p50 {{target}}"),
                        Query(quantile(0.99, CALL_DURATION, "target"), "p99 {{target}}"),
                        unit="s",
                    ),
                    ts(
                        "Circuit open by target",
                        "1 while a target's breaker keeps calls from it.",
                        Query(f"max by (target) ({sel(CIRCUIT_OPEN)})", "{{target}}"),
                        max=1,
                    ),
                    ts(
                        "Webhook deliveries",
                        "Events the webhook consumer delivered (handled), skipped as duplicates or "
                        "dead-lettered, per second.",
                        Query(
                            f"sum by (outcome) ({rate(CONSUMER_MESSAGES, WEBHOOKS)})",
                            "{{outcome}}",
                        ),
                        unit="ops",
                    ),
                ),
            ),
        ),
    )


def database() -> Dashboard:
    def per_instance(metric: str) -> str:
        return f"sum by (instance) ({sel(metric)})"

    lookups, decisions = "app_cache_lookups_total", "app_rate_limit_decisions_total"
    hits = rate(lookups, 'result="hit"')
    bypassed = rate(lookups, 'result="bypassed"')
    limited = rate(decisions, 'decision="limited"')
    failed_open = rate(decisions, 'decision="failed_open"')

    return Dashboard(
        uid=f"{SERVICE_NAME}-database",
        slug="database",
        title=f"{SERVICE_NAME} / Database",
        description="The SQLAlchemy connection pools of the API workers and of the worker; the read "
        "cache and the rate limits (Redis, or process memory when embedded).",
        rows=(
            Row(
                "Pool",
                (
                    stat(
                        "Connections checked out",
                        "Connections in use now, every process.",
                        Query(f"sum({sel('app_db_pool_checked_out')})"),
                    ),
                    stat(
                        "Pool utilisation",
                        "Checked-out connections over the maximum the pools allow (the busiest instance).",
                        Query(
                            f"max({per_instance('app_db_pool_checked_out')}"
                            f" / {per_instance('app_db_pool_max')})"
                        ),
                        unit="percentunit",
                        thresholds=((0.7, "yellow"), (0.9, "red")),
                    ),
                    stat(
                        "Beyond the pool size",
                        "Overflow connections open now (the busiest instance): the pool size was not enough.",
                        Query(f"max(clamp_min({per_instance('app_db_pool_overflow')}, 0))"),
                        thresholds=((1, "yellow"),),
                    ),
                    stat(
                        "Pool maximum",
                        "Connections the pools may open at most, every process.",
                        Query(f"sum({sel('app_db_pool_max')})"),
                    ),
                    ts(
                        "Checked out, size and maximum by instance",
                        "Connections in use, kept open (pool size) and the most allowed, per instance "
                        "(an API instance sums its worker processes).",
                        Query(per_instance("app_db_pool_checked_out"), "checked out {{instance}}"),
                        Query(per_instance("app_db_pool_size"), "size {{instance}}"),
                        Query(per_instance("app_db_pool_max"), "max {{instance}}"),
                    ),
                    ts(
                        "Utilisation by instance",
                        "Checked-out connections over the maximum.",
                        Query(
                            f"{per_instance('app_db_pool_checked_out')} / {per_instance('app_db_pool_max')}",
                            "{{instance}}",
                        ),
                        unit="percentunit",
                        max=1,
                    ),
                    ts(
                        "Checked out by service",
                        "Connections in use per service (API and worker), every instance.",
                        Query(f"sum by (service) ({sel('app_db_pool_checked_out')})", "{{service}}"),
                    ),
                    ts(
                        "Overflow by instance",
                        "Connections beyond the pool size; negative: how many the pool may still open "
                        "before it reaches its size (SQLAlchemy's QueuePool.overflow()).",
                        Query(per_instance("app_db_pool_overflow"), "{{instance}}"),
                        min=None,
                    ),
                ),
            ),
            Row(
                "Cache and rate limits",
                (
                    stat(
                        "Cache hit ratio",
                        "Reads answered from the cache over all cached reads (bypassed ones included).",
                        Query(
                            ratio_or_zero(
                                hits,
                                rate(lookups),
                            )
                        ),
                        unit="percentunit",
                    ),
                    stat(
                        "Reads bypassing the cache",
                        "Reads that went to the database because the cache did not answer, per second.",
                        Query(f"sum({bypassed})"),
                        unit="reqps",
                        thresholds=((0.001, "yellow"),),
                    ),
                    stat(
                        "Requests over a rate limit",
                        "Requests refused with 429, per second.",
                        Query(f"sum({limited})"),
                        unit="reqps",
                    ),
                    stat(
                        "Limits failing open",
                        "Requests let through because the limiter could not answer, per second.",
                        Query(f"sum({failed_open})"),
                        unit="reqps",
                        thresholds=((0.001, "yellow"),),
                    ),
                    ts(
                        "Cache lookups by result",
                        "Hits, misses (loaded from the database, then stored) and reads that bypassed an "
                        "unavailable cache, per second.",
                        Query(f"sum by (cache, result) ({rate(lookups)})", "{{cache}} {{result}}"),
                        unit="reqps",
                    ),
                    ts(
                        "Cache errors by operation",
                        "Operations the cache did not answer (each one fell back): read, fill, invalidate "
                        "(owed and sent once it answers again), rate_limit.",
                        Query(f"sum by (operation) ({rate('app_cache_errors_total')})", "{{operation}}"),
                        unit="ops",
                    ),
                    ts(
                        "Rate-limit decisions",
                        "Requests each limit let through, refused (429) or let through unjudged "
                        "(failed open).",
                        Query(
                            f"sum by (limit, decision) ({rate(decisions)})",
                            "{{limit}} {{decision}}",
                        ),
                        unit="reqps",
                        width=24,
                    ),
                ),
            ),
        ),
    )


def runtime() -> Dashboard:
    # The API's gunicorn workers: app_process_* per process (label pid). The worker samples the
    # same series without pid; prometheus_client's process_* of it are shown instead, not twice.
    def api_worker(metric: str) -> str:
        return f"max by (instance, pid) ({sel(metric, API_PROCESS)})"

    def worker(metric: str) -> str:  # the worker: one process, prometheus_client's defaults
        return f"max by (instance) ({sel(metric)})"

    return Dashboard(
        uid=f"{SERVICE_NAME}-runtime",
        slug="runtime",
        title=f"{SERVICE_NAME} / Runtime",
        description="CPU, memory, file descriptors, event-loop lag and garbage collection. The API's "
        "gunicorn workers: app_process_* per process (label pid); the worker: prometheus_client's "
        "process_* and python_gc_* series.",
        rows=(
            Row(
                "Processes",
                (
                    ts(
                        "CPU",
                        "CPU seconds per second (1 = one core), per process.",
                        Query(
                            f"sum by (instance, pid) ({rate('app_process_cpu_seconds_total', API_PROCESS)})",
                            "{{instance}} pid {{pid}}",
                        ),
                        Query(
                            f"sum by (instance) ({rate('process_cpu_seconds_total')})",
                            "{{instance}}",
                        ),
                        unit="percentunit",
                    ),
                    ts(
                        "Resident memory",
                        "Resident set size per process.",
                        Query(api_worker("app_process_resident_memory_bytes"), "{{instance}} pid {{pid}}"),
                        Query(worker("process_resident_memory_bytes"), "{{instance}}"),
                        unit="bytes",
                    ),
                    ts(
                        "Open file descriptors",
                        "Sockets, files and pipes open per process.",
                        Query(api_worker("app_process_open_fds"), "{{instance}} pid {{pid}}"),
                        Query(worker("process_open_fds"), "{{instance}}"),
                    ),
                    ts(
                        "Event-loop lag",
                        "How much later than asked a timer fired on each process's event loop: time "
                        "in which nothing else could run (blocking code shows here first).",
                        Query(
                            f"max by (instance, pid) ({sel('app_event_loop_lag_seconds')})",
                            "{{instance}} {{pid}}",
                        ),
                        unit="s",
                    ),
                    ts(
                        "Garbage collections (worker)",
                        "Collections per second per generation.",
                        Query(
                            f"sum by (instance, generation) ({rate('python_gc_collections_total')})",
                            "{{instance}} gen {{generation}}",
                        ),
                        unit="ops",
                    ),
                    ts(
                        "Targets up",
                        "1 while Prometheus can scrape the target.",
                        Query(f"max by (job, instance) ({sel('up')})", "{{job}} {{instance}}"),
                        max=1,
                    ),
                ),
            ),
        ),
    )


DASHBOARDS = (overview, mediator, messaging, database, runtime)


# --- rendering -----------------------------------------------------------------------------------------


def _thresholds(panel: Panel) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    steps += [{"color": color, "value": value} for value, color in panel.thresholds]
    return {"mode": "absolute", "steps": steps}


def _field_config(panel: Panel) -> Json:
    defaults: Json = {
        "unit": panel.unit,
        "thresholds": _thresholds(panel),
        "color": {"mode": "palette-classic"},
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "none", "group": "A"},
        }
    elif panel.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> Json:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["mean", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _target(query: Query, ref_id: str, panel: Panel) -> Json:
    target: Json = {
        "datasource": dict(DATASOURCE),
        "refId": ref_id,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "editorMode": "code",
        "range": panel.kind != "table",
        "instant": panel.kind == "table",
        "exemplar": query.exemplar,
    }
    if panel.kind == "table":
        target["format"] = "table"
    return target


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    rendered: Json = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
        "targets": [
            _target(query, chr(ord("A") + index), panel) for index, query in enumerate(panel.queries)
        ],
    }
    if panel.kind == "table":
        rendered["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ]
    return rendered


def _variables() -> Json:
    def variable(name: str, label: str, query: str) -> Json:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": {"query": query, "refId": f"{name}-variable"},
            "definition": query,
            "refresh": 2,  # on time range change: new instances appear without a reload
            "includeAll": True,
            "multi": True,
            "current": {},
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
        }

    return {
        "list": [
            variable("service", "Service", "label_values(app_info, service)"),
            variable("instance", "Instance", 'label_values(app_info{service=~"$service"}, instance)'),
        ]
    }


def render(dashboard: Dashboard) -> Json:
    panels: list[Json] = []
    panel_id, y = 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y = panel_id + 1, y + 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [TAG],
        "editable": True,  # provisioned: edits can be saved as a copy only
        "graphTooltip": 1,  # shared crosshair
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": SERVICE_NAME,
                "type": "dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": _variables(),
        "panels": panels,
    }


def render_all() -> dict[str, str]:
    """File name -> the JSON text this script writes."""
    files = {}
    for build in DASHBOARDS:
        dashboard = build()
        files[f"{dashboard.slug}.json"] = json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="directory (grafana/dashboards)")
    args = parser.parse_args(argv)
    output: Path = args.output
    files = render_all()
    if args.check:
        stale = [
            name
            for name, text in files.items()
            if not (output / name).is_file() or (output / name).read_text(encoding="utf-8") != text
        ]
        unknown = sorted(path.name for path in output.glob("*.json") if path.name not in files)
        for name in stale:
            print(f"dashboards: {output / name} differs from scripts/dashboards.py", file=sys.stderr)
        for name in unknown:
            print(f"dashboards: {output / name} is not written by scripts/dashboards.py", file=sys.stderr)
        if stale or unknown:
            print("dashboards: run python3 scripts/dashboards.py", file=sys.stderr)
            return 1
        return 0
    output.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output / name).write_text(text, encoding="utf-8")
        print(f"dashboards: wrote {output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
