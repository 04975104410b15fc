"""The sampler, the exporter choice from ``OTEL_*`` and the mediator behaviour's span and outcome."""

from __future__ import annotations

from typing import Any

import pytest
from fastotel import OTLPSpanProcessor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from app.building_blocks.observability.tracing import (
    HousekeepingSampler,
    otlp_span_exporter,
    sampler_from_environment,
    span_processors_from_environment,
)

OTEL = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)


def decide(kind: SpanKind, attributes: dict[str, Any] | None, *, parent: bool) -> Decision:
    context = None
    if parent:
        span = NonRecordingSpan(
            SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        )
        context = trace.set_span_in_context(span)
    return (
        HousekeepingSampler(ParentBased(ALWAYS_ON)).should_sample(context, 7, "x", kind, attributes).decision
    )


def test_database_calls_outside_any_request_are_housekeeping() -> None:
    assert decide(SpanKind.CLIENT, {"db.system": "postgresql"}, parent=False) is Decision.DROP
    assert decide(SpanKind.CLIENT, {"db.system.name": "redis"}, parent=False) is Decision.DROP


def test_everything_else_is_sampled() -> None:
    assert decide(SpanKind.CLIENT, {"db.system": "postgresql"}, parent=True) is Decision.RECORD_AND_SAMPLE
    # An HTTP call without a parent is kept: dropping it would tell the called service not to trace.
    assert decide(SpanKind.CLIENT, {"http.request.method": "GET"}, parent=False) is Decision.RECORD_AND_SAMPLE
    assert decide(SpanKind.SERVER, None, parent=False) is Decision.RECORD_AND_SAMPLE
    assert decide(SpanKind.PRODUCER, None, parent=False) is Decision.RECORD_AND_SAMPLE


def test_the_sampler_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "AlwaysOnSampler" in sampler_from_environment().get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sampler = sampler_from_environment()
    assert isinstance(sampler, ParentBased)
    assert "0.25" in sampler.get_description()  # type: ignore[no-untyped-call]
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    assert isinstance(sampler_from_environment(), TraceIdRatioBased)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert sampler_from_environment().get_description() == "AlwaysOffSampler"


def exporters(processors: list[Any]) -> list[type]:
    """What each processor sends through: fastotel's own, or the SDK exporter's type."""
    found: list[type] = []
    for processor in processors:
        native = isinstance(processor, OTLPSpanProcessor)
        found.append(OTLPSpanProcessor if native else type(processor.span_exporter))
        processor.shutdown()
    return found


def test_nothing_is_exported_without_an_endpoint() -> None:
    assert span_processors_from_environment() == []
    assert otlp_span_exporter() is None


def test_otlp_http_spans_go_through_fastotel_unless_the_sdk_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert exporters(span_processors_from_environment()) == [OTLPSpanProcessor]
    assert exporters(span_processors_from_environment("sdk")) == [HttpExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # fastotel speaks OTLP/HTTP only
    assert exporters(span_processors_from_environment()) == [GrpcExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/protobuf"):
        span_processors_from_environment()


def test_the_exporters_named_are_the_ones_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert exporters(span_processors_from_environment()) == [ConsoleSpanExporter]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    assert exporters(span_processors_from_environment()) == [ConsoleSpanExporter, OTLPSpanProcessor]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert span_processors_from_environment() == []


def test_fastotel_refusing_its_settings_leaves_the_sdk_exporting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318")
    # fastotel reads the CA file when it is built, the SDK's exporter when it first sends
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/nonexistent/ca.pem")
    assert exporters(span_processors_from_environment()) == [HttpExporter]
    assert "fastotel cannot export" in caplog.text


def test_until_spans_go_somewhere_every_span_is_dropped_yet_keeps_its_ids() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    sampler = HousekeepingSampler(ParentBased(ALWAYS_ON), recording=False)
    assert sampler.should_sample(None, 7, "x", SpanKind.SERVER).decision is Decision.DROP
    span = TracerProvider(sampler=sampler).get_tracer("t").start_span("GET /x")
    assert not span.is_recording()
    assert span.get_span_context().is_valid  # a W3C trace id for logs and errors all the same
    sampler.recording = True
    assert sampler.should_sample(None, 7, "x", SpanKind.SERVER).decision is Decision.RECORD_AND_SAMPLE
