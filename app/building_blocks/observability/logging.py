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


class RepeatFilter(logging.Filter):
    """Lets one of a run of identical messages of ``loggers`` (and their children) through per
    ``window`` seconds.

    Client libraries log an error per attempt while a broker is away (aiokafka's consumer does so
    every 100 ms, its producer for every pending batch); one line with the count of what was
    dropped says the same. It sits on the handler: a logger's own filters do not see the records
    of its children (``aiokafka.consumer.fetcher``), which is where these come from.
    """

    def __init__(self, window: float = 5.0, loggers: tuple[str, ...] = ("aiokafka",)) -> None:
        super().__init__()
        self.window = window
        self.loggers = loggers
        self._children = tuple(f"{name}." for name in loggers)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name not in self.loggers and not record.name.startswith(self._children):
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = record.created
        first, dropped = self._seen.get(key, (0.0, 0))
        if now - first < self.window:
            self._seen[key] = (first, dropped + 1)
            return False
        if len(self._seen) > 1000:  # forget old runs; this filter must not grow without bound
            self._seen.clear()
        self._seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like it in the last {self.window:g}s)"
            record.args = None
        return True


NOISY_LIBRARIES = ("aiokafka",)


def configure_logging(
    *, service: str, level: str = "INFO", json: bool = True, access_log: bool = False
) -> None:
    """Route the root logger (and uvicorn's) to stdout; idempotent, safe to call per worker.

    ``level`` bounds every record written, uvicorn's included. The access log (a line per HTTP
    request) is off unless ``access_log``; even then uvicorn's ``--no-access-log`` wins.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setLevel(level.upper())  # also for loggers with a lower level of their own (uvicorn's)
    handler.addFilter(ContextFilter(service))
    handler.addFilter(RepeatFilter(loggers=NOISY_LIBRARIES))
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
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    _configure_access_log(enabled=access_log)


def _configure_access_log(*, enabled: bool) -> None:
    """uvicorn's ``--no-access-log`` leaves ``uvicorn.access`` without handlers and not
    propagating; remembered on first sight, so a second call still honours it."""
    access = logging.getLogger("uvicorn.access")
    if not hasattr(access, "_app_server_disabled"):
        access._app_server_disabled = not access.handlers and not access.propagate  # type: ignore[attr-defined]
    access.handlers.clear()
    access.propagate = enabled and not access._app_server_disabled  # type: ignore[attr-defined]
