"""Where OTLP goes, read from the SDK's variables the same way for spans and logs."""

from __future__ import annotations

import os
from typing import Literal

Signal = Literal["TRACES", "LOGS"]


def otlp_protocol(signal: Signal) -> Literal["grpc", "http/protobuf"] | None:
    """The protocol to export ``signal`` with, or ``None`` when no endpoint is configured.

    ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` must be set; the
    protocol is ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` or ``OTEL_EXPORTER_OTLP_PROTOCOL``,
    ``http/protobuf`` by default as the specification says. The exporters read the endpoint,
    headers and timeouts themselves.
    """
    if not (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        return "grpc"
    if protocol != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: expected 'http/protobuf' or 'grpc'")
    return "http/protobuf"


def exporter_names(variable: str) -> set[str]:
    """``OTEL_TRACES_EXPORTER`` / ``OTEL_LOGS_EXPORTER``: ``otlp`` by default."""
    return {name.strip() for name in os.environ.get(variable, "otlp").lower().split(",")}
