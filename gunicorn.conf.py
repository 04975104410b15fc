"""gunicorn for the API: ``gunicorn -c gunicorn.conf.py 'app.main:create_app()'``.

Each worker builds the app after the fork (no ``preload_app``), so every worker has its own
tracer provider, exporter thread, database pool and event loop. Metrics are exact across the
workers: prometheus_client's multiprocess mode keeps each worker's values in files under
``PROMETHEUS_MULTIPROC_DIR``, which is emptied at start and rid of a worker's live gauges when it
exits; ``GET /metrics`` sums them, whichever worker answers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# Before any worker imports prometheus_client: the mode is chosen at import.
_metrics_dir = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "var/prometheus-multiproc"))
_metrics_dir.mkdir(parents=True, exist_ok=True)  # so that a --preload gets as far as on_starting's refusal

_host, _port = os.environ.get("HOST", "0.0.0.0"), os.environ.get("PORT", "8000")  # noqa: S104 - a container's API
bind = os.environ.get("GUNICORN_BIND", f"{_host}:{_port}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# The app learns it is one of several processes (no read cache in one process's memory).
os.environ.setdefault("API_PROCESSES", str(workers))
worker_class = "uvicorn_worker.UvicornWorker"
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
keepalive = 5
preload_app = False  # each worker builds the app, its tracer and exporter after the fork
accesslog = None  # the app logs requests itself when ACCESS_LOG=true (uvicorn's access log, JSON)
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "{levelname}{name}{message}",
            "style": "{",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        }
    },
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
    "loggers": {"gunicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}


def on_starting(server: Any) -> None:
    """A fresh metrics directory: values of a previous run's workers must not be summed in."""
    if server.cfg.preload_app:  # --preload in GUNICORN_CMD_ARGS overrides the setting above
        raise RuntimeError(
            "preload_app: the app must be built in each worker, after the fork (fastotel's exporting"
            " thread does not survive a fork, prometheus_client's multiprocess mode needs each pid)"
        )
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    from app.building_blocks.observability.exemplars import remove_exemplar_files

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))  # type: ignore[no-untyped-call]
    remove_exemplar_files(str(_metrics_dir), worker.pid)
