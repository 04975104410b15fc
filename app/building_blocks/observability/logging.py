"""JSON logs, one object a line, correlated with traces and requests.

Every record carries ``timestamp``, ``level``, ``logger``, ``message``, ``service``, ``trace_id``,
``span_id`` and ``correlation_id`` plus whatever ``extra=`` the caller gave, so Loki can index
them and Grafana can jump from a log line to its trace.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from app.building_blocks.correlation import get_correlation_id
from app.building_blocks.observability.tracing import current_span_id, current_trace_id


class ContextFilter(logging.Filter):
    """Stamps service name, trace/span ids and correlation id onto each record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.trace_id = current_trace_id()
        record.span_id = current_span_id()
        record.correlation_id = get_correlation_id()
        return True


def configure_logging(*, service: str, level: str = "INFO", json: bool = True) -> None:
    """Route the root logger (and uvicorn's) to stdout; idempotent, safe to call per worker."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ContextFilter(service))
    formatter: logging.Formatter
    if json:
        formatter = JsonFormatter(
            "{levelname}{name}{message}{service}{trace_id}{span_id}{correlation_id}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_app_handler", False):
            root.removeHandler(existing)
    handler._app_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; let its records flow through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
