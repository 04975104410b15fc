"""The observability contract in one place: the series the service exposes (names, kinds, labels and
their bounded values), where Prometheus scrapes them, and the compose services of the stack.

The stack's configuration is checked against it (tests/integration/observability): every dashboard
query uses only these series and every series is on a dashboard; the collector exports only to
services listed here; a fake exporter built from it serves every series with these label values, so
the dashboards' queries are proven to match it in a real Prometheus. A change of the service's
metrics is a change here first.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

API = "api"
WORKER = "worker"

SERVICE = "user-service"
WORKER_SERVICE = "user-service-worker"
TOPIC = "user-service.users.v1"

# prometheus_client's default buckets are not used: these are the HTTP histogram's.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Series:
    """One metric family as exposed: counters with their ``_total`` name, histograms by base name."""

    name: str
    kind: Kind
    # label -> values it takes (bounded; the examples of open sets such as handler and topic are
    # what the fake exporter of the tests serves). Targets add job, instance and service.
    labels: MappingProxyType[str, tuple[str, ...]]
    jobs: tuple[str, ...]
    # one series per process of the API (gunicorn workers), told apart by a `pid` label
    per_process: bool = False
    # labelled service=<the process's service name> (the same value as the target's service label)
    own_service: bool = False
    # the histogram's buckets carry trace_id exemplars (OpenMetrics exposition)
    exemplars: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The names a PromQL query can use for this family."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _labels(**values: tuple[str, ...]) -> MappingProxyType[str, tuple[str, ...]]:
    return MappingProxyType(dict(values))


_NONE = _labels()
_HANDLERS = ("/api/v1/users", "/api/v1/users/{user_id}", "none")
_REQUEST_TYPES = ("RegisterUser", "GetUser")  # the request class names (app/users/application)
_CONSUMERS = ("users.activity-log", "webhooks")

SERIES: tuple[Series, ...] = (
    # HTTP (API only; HttpMetricsMiddleware)
    Series(
        "app_http_requests_total",
        "counter",
        _labels(
            method=("GET", "POST", "DELETE"),
            handler=_HANDLERS,
            status=("200", "201", "404", "409", "500", "503"),
        ),
        (API,),
    ),
    Series(
        "app_http_request_duration_seconds",
        "histogram",
        _labels(method=("GET", "POST", "DELETE"), handler=_HANDLERS),
        (API,),
        exemplars=True,
    ),
    # Mediator (API and worker)
    Series(
        "app_mediator_requests_total",
        "counter",
        _labels(
            request_type=_REQUEST_TYPES,
            kind=("command", "query"),
            outcome=("success", "rejected", "failed"),
        ),
        (API, WORKER),
    ),
    Series(
        "app_mediator_request_duration_seconds",
        "histogram",
        _labels(request_type=_REQUEST_TYPES, kind=("command", "query")),
        (API, WORKER),
    ),
    # Outbox (the relay: the worker; the API only in embedded mode)
    Series("app_outbox_backlog", "gauge", _NONE, (WORKER,)),
    Series("app_outbox_oldest_unpublished_age_seconds", "gauge", _NONE, (WORKER,)),
    Series("app_outbox_parked", "gauge", _NONE, (WORKER,)),
    Series("app_outbox_published_total", "counter", _labels(topic=(TOPIC,)), (WORKER,)),
    Series(
        "app_outbox_publish_failures_total",
        "counter",
        _labels(topic=(TOPIC,), kind=("unavailable", "refused", "error")),
        (WORKER,),
    ),
    # Consumers (worker)
    Series(
        "app_consumer_messages_total",
        "counter",
        _labels(consumer=_CONSUMERS, topic=(TOPIC,), outcome=("handled", "duplicate", "dead_lettered")),
        (WORKER,),
    ),
    Series(
        "app_consumer_retries_total",
        "counter",
        _labels(consumer=_CONSUMERS, topic=(TOPIC,), reason=("poison", "outage")),
        (WORKER,),
    ),
    Series("app_consumer_paused", "gauge", _labels(consumer=_CONSUMERS), (WORKER,)),
    Series("app_consumer_lag", "gauge", _labels(consumer=_CONSUMERS, topic=(TOPIC,)), (WORKER,)),
    # Database pool (API and worker; summed over the API's processes: no pid label)
    Series("app_db_pool_size", "gauge", _NONE, (API, WORKER)),
    Series("app_db_pool_checked_out", "gauge", _NONE, (API, WORKER)),
    Series("app_db_pool_overflow", "gauge", _NONE, (API, WORKER)),  # negative: room below the size
    Series("app_db_pool_max", "gauge", _NONE, (API, WORKER)),
    # The read cache and rate limits of the API (Redis, or process memory when embedded)
    Series(
        "app_cache_lookups_total",
        "counter",
        _labels(cache=("queries",), result=("hit", "miss", "bypassed")),
        (API,),
    ),
    Series(
        "app_cache_errors_total",
        "counter",
        _labels(operation=("read", "fill", "invalidate", "rate_limit")),
        (API,),
    ),
    Series(
        "app_rate_limit_decisions_total",
        "counter",
        _labels(limit=("registrations",), decision=("allowed", "limited", "failed_open")),
        (API,),
    ),
    # Calls to other services (HttpClient): the worker's webhooks
    Series(
        "app_http_client_requests_total",
        "counter",
        _labels(
            target=("webhooks",),
            method=("POST",),
            outcome=("2xx", "3xx", "4xx", "5xx", "error", "circuit_open"),
        ),
        (WORKER,),
    ),
    Series("app_http_client_request_duration_seconds", "histogram", _labels(target=("webhooks",)), (WORKER,)),
    Series("app_http_client_circuit_open", "gauge", _labels(target=("webhooks",)), (WORKER,)),
    # Runtime of the worker (one process): prometheus_client's default collectors
    Series("process_cpu_seconds_total", "counter", _NONE, (WORKER,)),
    Series("process_resident_memory_bytes", "gauge", _NONE, (WORKER,)),
    Series("process_open_fds", "gauge", _NONE, (WORKER,)),
    Series("python_gc_collections_total", "counter", _labels(generation=("0", "1", "2")), (WORKER,)),
    # Runtime sampled in every process (app/building_blocks/observability/runtime.py): per gunicorn
    # worker of the API (label pid; multiprocess mode has no default collectors), and in the worker
    # too (no pid), where prometheus_client's process_* above say the same
    Series("app_process_cpu_seconds_total", "gauge", _NONE, (API, WORKER), per_process=True),
    Series("app_process_resident_memory_bytes", "gauge", _NONE, (API, WORKER), per_process=True),
    Series("app_process_open_fds", "gauge", _NONE, (API, WORKER), per_process=True),
    Series("app_event_loop_lag_seconds", "gauge", _NONE, (API, WORKER), per_process=True),
    # Build information (= 1); service: user-service (API), user-service-worker (worker)
    Series("app_info", "gauge", _labels(version=("0.1.0",)), (API, WORKER), own_service=True),
)

# Series Prometheus itself attaches to every target it scrapes: dashboards may use them too.
TARGET_SERIES: tuple[str, ...] = ("up",)


def metric_names() -> frozenset[str]:
    """Every name a dashboard query may use."""
    return frozenset(name for series in SERIES for name in series.names) | frozenset(TARGET_SERIES)


def family_of(name: str) -> Series | None:
    """The contract series a PromQL metric name belongs to."""
    for series in SERIES:
        if name in series.names:
            return series
    return None


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    address: str  # host:port in the compose network
    service: str  # the `service` label prometheus.yml gives the target


SCRAPE_TARGETS: tuple[ScrapeTarget, ...] = (
    ScrapeTarget(API, "api:8000", SERVICE),
    ScrapeTarget(WORKER, "worker:9102", WORKER_SERVICE),
)

# The compose services of the stack and the ports they serve on inside the compose network.
COMPOSE_SERVICES: MappingProxyType[str, tuple[int, ...]] = MappingProxyType(
    {
        "api": (8000,),
        "worker": (9102,),
        "prometheus": (9090,),
        "tempo": (3200, 4317, 4318),
        "loki": (3100,),
        "grafana": (3000,),
        "otel-collector": (4317, 4318),
    }
)

# Grafana data source uids: the dashboards and the data sources' links refer to these.
DATASOURCE_UIDS: MappingProxyType[str, str] = MappingProxyType(
    {"prometheus": "prometheus", "tempo": "tempo", "loki": "loki"}
)

# Where the compose file mounts grafana/dashboards inside the Grafana container.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards"

# OTLP attributes Loki may turn into index labels: low cardinality only. Never a trace or span id.
LOKI_INDEX_LABEL_ATTRIBUTES = frozenset(
    {"service.name", "service.namespace", "deployment.environment", "deployment.environment.name"}
)
