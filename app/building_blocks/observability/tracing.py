"""Tracing: one tracer provider a process, exporting over OTLP when an endpoint is configured.

The ``OTEL_*`` variables mean what the OpenTelemetry SDK says they mean: the endpoint, protocol,
headers and timeouts (``OTEL_EXPORTER_OTLP_[TRACES_]*``), the sampler (``OTEL_TRACES_SAMPLER`` and
its argument), ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, and ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console`` or ``none``). With no endpoint set nothing is exported, yet every request
still gets a W3C trace id for its logs and errors: a service without a collector runs quietly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from app.building_blocks.observability.otlp import exporter_names, otlp_protocol

logger = logging.getLogger("app.observability")

TRACER_NAME = "app"
DATABASE_ATTRIBUTES = ("db.system", "db.system.name")  # what database instrumentations set at start
_DROP = SamplingResult(Decision.DROP)

SpanExport = Literal["fastotel", "sdk"]
"""Who sends spans over OTLP/HTTP: ``fastotel`` (Rust, off the GIL) or the SDK's own exporter."""

_lock = threading.RLock()
_provider: TracerProvider | None = None


def current_trace_id() -> str | None:
    """The W3C trace id (32 hex digits) of the active span, or ``None`` when nothing traces."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_span_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else None


class HousekeepingSampler(Sampler):
    """Drops database client spans that start a trace; everything else goes to ``delegate``.

    A SQL statement or Redis command with no request or message around it is the process's own
    housekeeping: the relay claiming rows and marking them published, the consumer's inbox purge,
    the gauges' sampling. Exported, each would be a one-span trace every poll, burying the traces
    people look for. An HTTP call is not dropped so: its ``traceparent`` would tell the service it
    calls not to trace the request either.
    """

    def __init__(self, delegate: Sampler, *, recording: bool = True) -> None:
        self.delegate = delegate
        # False while no span goes anywhere: every span is then a non-recording one that still has
        # its W3C ids (for logs, errors, outgoing traceparents) at a fraction of the cost.
        self.recording = recording

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.recording:
            return _DROP
        if (
            kind is SpanKind.CLIENT
            and attributes
            and any(name in attributes for name in DATABASE_ATTRIBUTES)
            and not trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return _DROP
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"HousekeepingSampler{{{self.delegate.get_description()}}}"


def sampler_from_environment() -> Sampler:
    """``OTEL_TRACES_SAMPLER`` as the SDK reads it (default: parent-based, always on)."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = min(1.0, max(0.0, float(argument)))
    except ValueError:
        ratio = 1.0
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in samplers:
        logger.warning("OTEL_TRACES_SAMPLER=%s is not a sampler this service knows; sampling all", name)
    return samplers.get(name, samplers["parentbased_always_on"])


def otlp_span_exporter() -> SpanExporter | None:
    """The SDK's OTLP exporter for ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, or ``None`` without
    an endpoint. ``http/protobuf`` is the specification's default; the exporter reads its
    endpoint, headers and timeout from the environment itself."""
    protocol = otlp_protocol("TRACES")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    return None


def native_otlp_processor() -> SpanProcessor | None:
    """fastotel's ``OTLPSpanProcessor``, or ``None`` (logged) when it cannot be built here: the
    SDK's exporter then takes over, rather than the process failing to start."""
    try:
        from fastotel import OTLPSpanProcessor

        return OTLPSpanProcessor()
    except (ImportError, OSError, ValueError) as error:
        logger.warning("tracing: fastotel cannot export (%s); using the SDK's exporter", error)
        return None


def span_processors_from_environment(export: SpanExport = "fastotel") -> list[SpanProcessor]:
    """The processors that send this process's spans where ``OTEL_TRACES_EXPORTER`` (``otlp`` by
    default; ``console``; both; ``none``) and the ``OTEL_EXPORTER_OTLP_*`` variables say.

    OTLP/HTTP goes through fastotel's ``OTLPSpanProcessor`` unless ``export`` is ``sdk``. It reads
    the variables of the SDK's ``BatchSpanProcessor`` and ``OTLPSpanExporter`` and posts the same
    protobuf, but batches, encodes and sends on a native thread that never holds the GIL. The
    SDK's exporter encodes in Python on a thread that competes with the requests for the
    interpreter: measured, 110-120 µs of CPU for the three spans of a read, against 9 µs on
    fastotel's thread and 14 µs a span to hand it over (docs/OBSERVABILITY.md). gRPC has no
    fastotel counterpart and keeps the SDK's exporter.
    """
    names = exporter_names("OTEL_TRACES_EXPORTER")
    processors: list[SpanProcessor] = []
    if "console" in names:
        processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in names:
        native = export == "fastotel" and otlp_protocol("TRACES") == "http/protobuf"
        processor = native_otlp_processor() if native else None
        if processor is None and (exporter := otlp_span_exporter()) is not None:
            processor = BatchSpanProcessor(exporter)
        if processor is not None:
            processors.append(processor)
    return processors


def configure_tracing(
    *, service_name: str, service_version: str = "0.1.0", export: SpanExport = "fastotel"
) -> TracerProvider:
    """Install the process's tracer provider once; later calls return it.

    With an exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``...), spans are recorded and the database
    and Redis clients are instrumented. Without one, nothing would read a span: each request
    still gets its trace id, but as a non-recording span, and the clients are not instrumented;
    that keeps tracing on by default nearly free. :func:`record_spans` turns recording on later.

    The first caller's service name wins: OpenTelemetry allows one global provider a process.
    Under gunicorn each worker process calls this after the fork (the app is built in the
    worker; gunicorn.conf.py refuses ``preload_app``), so no exporter thread is inherited from
    the master: fastotel's would export nothing in a child forked after its first span.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        processors = span_processors_from_environment(export)  # a bad variable fails before
        resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: service_version})
        sampler = HousekeepingSampler(sampler_from_environment(), recording=False)
        provider = TracerProvider(resource=resource, sampler=sampler)
        trace.set_tracer_provider(provider)
        _provider = provider
    for processor in processors:
        record_spans(processor)
    logger.debug(
        "tracing: %s, exporting through %s",
        provider.resource.attributes.get(SERVICE_NAME),
        ", ".join(type(processor).__name__ for processor in processors) or "nothing",
    )
    return provider


def record_spans(processor: SpanProcessor) -> None:
    """Send the spans of this process to ``processor`` (an exporter's, or a test's memory)."""
    provider = _provider
    if provider is None:
        raise RuntimeError("configure_tracing() first")
    provider.add_span_processor(processor)
    sampler = provider.sampler
    if isinstance(sampler, HousekeepingSampler):
        sampler.recording = True
    instrument_libraries()


def instrument_libraries() -> None:
    """asyncpg and Redis clients, process-wide and once.

    httpx is instrumented per client (``HTTPXClientInstrumentor.instrument_client``) by the kit's
    outbound client, not process-wide: a test's or a tool's client calling the app in process
    would otherwise become the parent of the app's own request spans.
    """
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentors: list[Any] = [AsyncPGInstrumentor(), RedisInstrumentor()]  # type: ignore[no-untyped-call]
    with _lock:
        for instrumentor in instrumentors:
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()


def recording() -> bool:
    """Whether spans go anywhere (an exporter, a test's memory): else only their ids are used."""
    provider = _provider
    if provider is None:
        return False
    sampler = provider.sampler
    return not isinstance(sampler, HousekeepingSampler) or sampler.recording


def flush_traces(timeout_seconds: float = 5.0) -> None:
    """Send the spans and logs still buffered (at shutdown): bounded, never raising."""
    from app.building_blocks.observability.log_export import flush_logs

    flush_logs(timeout_seconds)
    if _provider is not None:
        try:
            _provider.force_flush(int(timeout_seconds * 1000))
        except Exception:  # pragma: no cover - an exporter's failure must not fail a shutdown
            logger.warning("tracing: flushing spans failed", exc_info=True)


_TRACER = trace.get_tracer(TRACER_NAME)  # a proxy until a provider is installed, then that one's


def tracer() -> trace.Tracer:
    return _TRACER
