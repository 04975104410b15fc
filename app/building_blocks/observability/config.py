"""What :func:`setup_observability` turns on."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.building_blocks.observability.tracing import SpanExport


class ObservabilityConfig(BaseModel):
    """Everything on by default: traces (exported only where ``OTEL_EXPORTER_OTLP_ENDPOINT`` points),
    JSON logs stamped with trace ids, and Prometheus metrics at ``metrics_path``.

    Exporter endpoint, protocol, headers, sampler and resource attributes are the ``OTEL_*``
    variables of the OpenTelemetry SDK, not fields here.
    """

    service_name: str
    service_version: str = "0.1.0"
    tracing_enabled: bool = True
    logging_enabled: bool = True
    metrics_enabled: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = False
    metrics_path: str = "/metrics"
    # Who sends OTLP/HTTP spans: fastotel (native, off the GIL) or the SDK's Python exporter.
    span_export: SpanExport = "fastotel"
    # Requests not traced (comma-separated regular expressions searched in the URL): the probes
    # and the scrape would otherwise be most of the traces.
    traces_excluded_urls: str = Field(default="/health/,/metrics")
