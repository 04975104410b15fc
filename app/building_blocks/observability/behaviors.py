"""The mediator behaviour that traces and measures every ``send()``."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from app.building_blocks.application.mediator import NextStep, RequestContext
from app.building_blocks.domain.exceptions import DomainError
from app.building_blocks.observability.metrics import MEDIATOR_REQUEST_DURATION, MEDIATOR_REQUESTS
from app.building_blocks.observability.tracing import recording, tracer


# The series' children, looked up once: ``labels()`` validates and locks on every call (about
# 4 µs). Bounded by the request types; a test that clear()s these metrics must clear these too.
@cache
def _requests(name: str, kind: str, outcome: str) -> Any:
    return MEDIATOR_REQUESTS.labels(name, kind, outcome)


@cache
def _duration(name: str, kind: str) -> Any:
    return MEDIATOR_REQUEST_DURATION.labels(name, kind)


class ObservabilityBehavior:
    """One span per request, named after its type, and the request's rate, duration and outcome.

    While spans are recorded nowhere, a request sent inside a span (an HTTP request's, a
    message's) gets no span of its own, only its metrics: a non-recording span would cost 20 µs
    to give its log lines a span id nobody can look up.

    Outcomes: ``success``; ``rejected``, a business error (a domain error: the caller's answer,
    not the system's fault, so the span keeps an unset status and the error code); ``failed``,
    anything else (the span records the exception and an error status). Put it outermost so the
    duration includes the transaction and the span is the parent of the SQL it runs.
    """

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any:
        name = context.request_name
        kind = "command" if context.is_command else "query"
        started = time.perf_counter()
        outcome = "failed"
        current = trace.get_current_span()
        # While nothing records, a span would only give the log lines inside a span id nobody can
        # look up: inside a request's or message's span, its (non-recording) span stands in, and
        # the calls below are no-ops on it. A send() outside any span (a job, a script) still
        # opens one: its logs and events need a trace id.
        spanned: AbstractContextManager[trace.Span] = (
            nullcontext(current)
            if not recording() and current.get_span_context().is_valid and not current.is_recording()
            else tracer().start_as_current_span(
                name,
                attributes={"mediator.request_type": name, "mediator.request_kind": kind},
                record_exception=False,
                set_status_on_exception=False,
            )
        )
        with spanned as span:
            try:
                result = await call_next()
                outcome = "success"
                return result
            except DomainError as error:
                outcome = "rejected"
                span.set_attribute("mediator.error_code", error.code)
                raise
            except BaseException as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
            finally:
                span.set_attribute("mediator.outcome", outcome)
                _requests(name, kind, outcome).inc()
                _duration(name, kind).observe(time.perf_counter() - started)
