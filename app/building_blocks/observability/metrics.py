"""The app's Prometheus series: one prefix (``app_``), bounded labels, exact across processes.

Under gunicorn every worker process counts for itself in prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``gunicorn.conf.py``) and ``/metrics`` sums the files, so a
counter is exact whichever worker answers the scrape. That mode keeps no exemplars, so
:mod:`app.building_blocks.observability.exemplars` keeps them beside it. One process (``make
run``, the worker) uses the ordinary registry, where exemplars are native.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

NAMESPACE = "app"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None


# --- HTTP (the API) ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template and status code.",
    ["method", "handler", "status"],
    namespace=NAMESPACE,
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to its response, by route template (exemplars: trace_id).",
    ["method", "handler"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)

# --- The mediator -------------------------------------------------------------------------------
MEDIATOR_REQUESTS = Counter(
    "mediator_requests",
    "Requests sent through the mediator, by type and outcome (success, rejected, failed).",
    ["request_type", "kind", "outcome"],
    namespace=NAMESPACE,
)
MEDIATOR_REQUEST_DURATION = Histogram(
    "mediator_request_duration_seconds",
    "Time a request spent in the mediator's pipeline, its transaction included.",
    ["request_type", "kind"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)

# --- The outbox relay ---------------------------------------------------------------------------
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog",
    "Outbox rows not yet published and not parked.",
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished, unparked outbox row (0 when there is none).",
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
OUTBOX_PARKED = Gauge(
    "outbox_parked",
    "Outbox rows set aside until an operator retries or discards them.",
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
OUTBOX_PUBLISHED = Counter(
    "outbox_published",
    "Outbox rows the broker acknowledged, by topic.",
    ["topic"],
    namespace=NAMESPACE,
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures",
    "Outbox sends that failed, by topic and kind (unavailable, refused, error).",
    ["topic", "kind"],
    namespace=NAMESPACE,
)

# --- Consumers ----------------------------------------------------------------------------------
CONSUMER_MESSAGES = Counter(
    "consumer_messages",
    "Messages a consumer finished with, by outcome (handled, duplicate, dead_lettered).",
    ["consumer", "topic", "outcome"],
    namespace=NAMESPACE,
)
CONSUMER_RETRIES = Counter(
    "consumer_retries",
    "Attempts a consumer retried, by reason (poison: the message; outage: a dependency).",
    ["consumer", "topic", "reason"],
    namespace=NAMESPACE,
)
CONSUMER_PAUSED = Gauge(
    "consumer_paused",
    "1 while a consumer holds its partitions paused to retry a message.",
    ["consumer"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)
CONSUMER_LAG = Gauge(
    "consumer_lag",
    "Messages between a consumer's position and the high watermark, summed over its partitions.",
    ["consumer", "topic"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)

# --- Database pool ------------------------------------------------------------------------------
DB_POOL_SIZE = Gauge(
    "db_pool_size", "Connections the pool holds open.", namespace=NAMESPACE, multiprocess_mode="livesum"
)
DB_POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Connections lent to a unit of work right now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "db_pool_overflow",
    "Connections opened beyond the pool size (negative: room left before the size is reached).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "db_pool_max",
    "The most connections the pools may open (pool size plus overflow, summed over processes).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
)

# --- Runtime ------------------------------------------------------------------------------------
# prometheus_client's process collector reads only the process that answers a scrape; these are
# per process (``pid`` label in multiprocess mode), so every gunicorn worker shows.
PROCESS_CPU = Gauge(
    "process_cpu_seconds_total",
    "CPU time this process used (user + system).",
    namespace=NAMESPACE,
    multiprocess_mode="liveall",
)
PROCESS_MEMORY = Gauge(
    "process_resident_memory_bytes",
    "Resident memory of this process.",
    namespace=NAMESPACE,
    multiprocess_mode="liveall",
)
PROCESS_OPEN_FDS = Gauge(
    "process_open_fds",
    "Open file descriptors of this process.",
    namespace=NAMESPACE,
    multiprocess_mode="liveall",
)
EVENT_LOOP_LAG = Gauge(
    "event_loop_lag_seconds",
    "How late a timer fired on this process's event loop: time the loop could not run anything.",
    namespace=NAMESPACE,
    multiprocess_mode="liveall",
)
# --- The cache and rate limits (Redis, or process memory when embedded) ---------------------------
CACHE_LOOKUPS = Counter(
    "cache_lookups",
    "Reads through a cache, by cache and result (hit, miss, bypassed: the cache was unavailable).",
    ["cache", "result"],
    namespace=NAMESPACE,
)
CACHE_ERRORS = Counter(
    "cache_errors",
    "Cache operations that failed because the cache did not answer, by operation.",
    ["operation"],
    namespace=NAMESPACE,
)
RATE_LIMIT_DECISIONS = Counter(
    "rate_limit_decisions",
    "Requests a rate limit judged, by limit and decision (allowed, limited, failed_open).",
    ["limit", "decision"],
    namespace=NAMESPACE,
)

# --- Calls to other services (HttpClient: the webhooks, external APIs) -----------------------------
HTTP_CLIENT_REQUESTS = Counter(
    "http_client_requests",
    "Attempts to call another service, by target, method and outcome (2xx, 3xx, 4xx, 5xx, error: no "
    "answer, circuit_open: not sent).",
    ["target", "method", "outcome"],
    namespace=NAMESPACE,
)
HTTP_CLIENT_DURATION = Histogram(
    "http_client_request_duration_seconds",
    "Time of one call to another service, its retries and their waits included, by target.",
    ["target"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
HTTP_CLIENT_CIRCUIT_OPEN = Gauge(
    "http_client_circuit_open",
    "1 while the target's circuit breaker keeps calls from it (open or half-open), else 0.",
    ["target"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
)

INFO = Gauge(
    "info",
    "1, labelled with the service and its version.",
    ["service", "version"],
    namespace=NAMESPACE,
    multiprocess_mode="max",
)
