"""While spans go nowhere: the request's ids come from TraceIdsMiddleware, the mediator counts
without a span of its own inside it, and the paths that are never traced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from app.building_blocks.application import Mediator, Query
from app.building_blocks.domain import NotFoundError
from app.building_blocks.observability import behaviors, http
from app.building_blocks.observability.behaviors import ObservabilityBehavior
from app.building_blocks.observability.config import ObservabilityConfig
from app.building_blocks.observability.http import TraceIdsMiddleware
from app.building_blocks.observability.setup import untraced_paths
from app.building_blocks.observability.tracing import HousekeepingSampler

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


@pytest.fixture(autouse=True)
def nothing_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's tracing as it is with no exporter: valid ids on spans that record nothing."""
    tracer = TracerProvider(sampler=HousekeepingSampler(ParentBased(ALWAYS_ON), recording=False)).get_tracer(
        "t"
    )
    for module in (behaviors, http):
        monkeypatch.setattr(module, "recording", lambda: False)
        monkeypatch.setattr(module, "tracer", lambda: tracer)


class Lookup(Query[str]):
    outcome: str


class LookupHandler:
    def __init__(self) -> None:
        self.spans: list[trace.Span] = []

    async def handle(self, query: Lookup) -> str:
        self.spans.append(trace.get_current_span())
        if query.outcome == "rejected":
            raise NotFoundError("no such thing")
        if query.outcome == "failed":
            raise RuntimeError("broken")
        if query.outcome == "cancelled":
            raise asyncio.CancelledError
        return "found"


def counted(outcome: str) -> float:
    labels = {"request_type": "Lookup", "kind": "query", "outcome": outcome}
    return REGISTRY.get_sample_value("app_mediator_requests_total", labels) or 0.0


def mediator() -> tuple[Mediator[Any], LookupHandler]:
    handler = LookupHandler()
    instance: Mediator[Any] = Mediator(behaviors=[ObservabilityBehavior()])
    instance.register(Lookup, handler)
    return instance, handler


@pytest.mark.parametrize(
    ("outcome", "raised"),
    [
        ("success", None),
        ("rejected", NotFoundError),
        ("failed", RuntimeError),
        ("cancelled", asyncio.CancelledError),
    ],
)
async def test_inside_a_request_the_mediator_counts_every_outcome_without_a_span(
    outcome: str, raised: type[BaseException] | None
) -> None:
    instance, handler = mediator()
    request_span = NonRecordingSpan(SpanContext(TRACE_ID, 0x00F067AA0BA902B7, is_remote=False))
    counted_as = "failed" if outcome == "cancelled" else outcome
    before = counted(counted_as)
    with trace.use_span(request_span):
        if raised is None:
            assert await instance.send(Lookup(outcome=outcome)) == "found"
        else:
            with pytest.raises(raised):
                await instance.send(Lookup(outcome=outcome))
    assert handler.spans == [request_span]  # the request's span: no other was made
    assert counted(counted_as) == before + 1


async def test_outside_any_span_the_mediator_still_gives_its_work_a_trace_id() -> None:
    instance, handler = mediator()
    assert trace.get_current_span() is INVALID_SPAN
    await instance.send(Lookup(outcome="success"))
    (span,) = handler.spans
    assert span.get_span_context().is_valid  # a job's or a script's logs and events get a trace id
    assert not span.is_recording()


def http_scope(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "method": "GET", "path": "/api/v1/users/1", "headers": list(headers)}


async def no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def discard(_message: Any) -> None:
    pass


class Inner:
    """The app below the middleware: what it saw, and whether it fails."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.span: trace.Span | None = None
        self.baggage: dict[str, object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.span = trace.get_current_span()
        self.baggage = dict(baggage.get_all())
        if self.fail:
            raise RuntimeError("the app failed")


async def test_every_request_gets_a_trace_id_and_the_context_is_restored_after() -> None:
    inner = Inner()
    await TraceIdsMiddleware(inner, excluded=lambda _scope: False)(http_scope(), no_body, discard)
    assert inner.span is not None
    assert inner.span.get_span_context().is_valid
    assert trace.get_current_span() is INVALID_SPAN


async def test_the_callers_trace_is_continued_and_its_baggage_not_passed_on() -> None:
    inner = Inner()
    headers = (
        (b"traceparent", f"00-{TRACE_ID:032x}-00f067aa0ba902b7-01".encode()),
        (b"baggage", b"user=someone"),
    )
    await TraceIdsMiddleware(inner, excluded=lambda _scope: False)(http_scope(*headers), no_body, discard)
    assert inner.span is not None
    assert inner.span.get_span_context().trace_id == TRACE_ID
    assert inner.baggage == {}


async def test_a_failing_app_leaves_no_span_behind() -> None:
    with pytest.raises(RuntimeError, match="the app failed"):
        await TraceIdsMiddleware(Inner(fail=True), excluded=lambda _scope: False)(
            http_scope(), no_body, discard
        )
    assert trace.get_current_span() is INVALID_SPAN


def test_probes_and_the_scrape_are_not_traced() -> None:
    untraced = untraced_paths(ObservabilityConfig(service_name="s"))
    assert untraced({"path": "/health/live"})
    assert untraced({"path": "/metrics"})
    assert not untraced({"path": "/api/v1/users"})
    never = untraced_paths(ObservabilityConfig(service_name="s", traces_excluded_urls=""))
    assert not never({"path": "/metrics"})
