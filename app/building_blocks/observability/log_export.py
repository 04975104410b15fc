"""Log records as OTLP logs, beside the JSON lines on stdout, when a collector is configured.

Shipping logs over OTLP needs no agent on the host reading container output: the collector of
the compose stack receives them and forwards them to Loki's OTLP endpoint, where the record's
trace and span ids become structured metadata (searchable, never labels). The variables are the
SDK's: ``OTEL_LOGS_EXPORTER`` (``otlp``, the default, or ``none``), ``OTEL_EXPORTER_OTLP_[LOGS_]
ENDPOINT`` and ``..._PROTOCOL``. No endpoint: nothing is sent.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

from app.building_blocks.observability.otlp import exporter_names, otlp_protocol

_lock = threading.Lock()
_provider: LoggerProvider | None = None


def log_exporter_from_environment() -> LogRecordExporter | None:
    protocol = otlp_protocol("LOGS") if "otlp" in exporter_names("OTEL_LOGS_EXPORTER") else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

        return HttpExporter()
    return None


def configure_log_export(
    *, service_name: str, service_version: str, level: str, filters: tuple[logging.Filter, ...] = ()
) -> bool:
    """Add an OTLP handler to the root logger once a process; ``False`` when there is nowhere to send."""
    global _provider
    with _lock:
        if _provider is not None:
            return True
        exporter = log_exporter_from_environment()
        if exporter is None:
            return False
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        provider = LoggerProvider(
            resource=Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: service_version})
        )
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        handler = LoggingHandler(level=logging.getLevelName(level.upper()), logger_provider=provider)
        for log_filter in filters:
            handler.addFilter(log_filter)
        logging.getLogger().addHandler(handler)
        _provider = provider
        return True


def flush_logs(timeout_seconds: float = 5.0) -> None:
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))
