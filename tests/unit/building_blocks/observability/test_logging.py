"""JSON log lines and the filter that keeps a broker outage from flooding the log."""

from __future__ import annotations

import json
import logging

from app.building_blocks.correlation import reset_correlation_id, set_correlation_id
from app.building_blocks.observability.logging import ContextFilter, RepeatFilter


def record(message: str, created: float, logger: str = "aiokafka") -> logging.LogRecord:
    entry = logging.LogRecord(logger, logging.ERROR, __file__, 1, message, None, None)
    entry.created = created
    return entry


def test_repeats_within_the_window_are_counted_not_logged() -> None:
    repeat = RepeatFilter(window=5)
    assert repeat.filter(record("broker down", 100.0))
    assert not repeat.filter(record("broker down", 101.0))
    assert not repeat.filter(record("broker down", 102.0))
    assert repeat.filter(record("something else", 102.0))
    later = record("broker down", 106.0)
    assert repeat.filter(later)
    assert later.getMessage() == "broker down (2 more like it in the last 5s)"


def test_the_children_of_a_noisy_library_are_filtered_and_nothing_else_is() -> None:
    repeat = RepeatFilter(window=5, loggers=("aiokafka",))
    fetcher = "aiokafka.consumer.fetcher"
    assert repeat.filter(record("Failed fetch messages from 1", 100.0, fetcher))
    assert not repeat.filter(record("Failed fetch messages from 1", 100.1, fetcher))
    assert repeat.filter(record("Failed fetch messages from 1", 100.1, "app.messaging"))
    assert repeat.filter(record("Failed fetch messages from 1", 100.2, "app.messaging"))
    assert repeat.filter(record("Failed fetch messages from 1", 100.2, "aiokafkaish"))  # not a child
    assert repeat.filter(record("Failed fetch messages from 1", 100.3, "aiokafkaish"))


def test_log_lines_carry_service_and_correlation_id() -> None:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.Handler()
    handler.addFilter(ContextFilter("svc"))
    formatter = JsonFormatter(
        "{levelname}{name}{message}{service}{trace_id}{span_id}{correlation_id}", style="{", timestamp=True
    )
    token = set_correlation_id("corr-9")
    try:
        entry = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        handler.filter(entry)
        line = json.loads(formatter.format(entry))
    finally:
        reset_correlation_id(token)
    assert line["message"] == "hello world"
    assert (line["service"], line["correlation_id"], line["trace_id"]) == ("svc", "corr-9", None)
    assert "timestamp" in line
