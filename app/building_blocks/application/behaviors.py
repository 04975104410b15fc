"""Pipeline behaviours that ship with the kit: logging and transactions."""

from __future__ import annotations

import logging
import time
from typing import Any

from app.building_blocks.application.mediator import NextStep, RequestContext
from app.building_blocks.application.unit_of_work import UnitOfWork
from app.building_blocks.domain.exceptions import DomainError

logger = logging.getLogger("app.mediator")


class LoggingBehavior:
    """A log line per request that needs one: name, kind, outcome and duration.

    A request handled in time is logged at DEBUG only: a line per request at INFO costs more than
    the kit's whole request path and says nothing an operator acts on. One slower than
    ``slow_ms`` is logged at WARNING. Business errors are expected outcomes (INFO). Anything else
    is logged at ERROR with its type; the traceback is logged once, by whoever catches it last
    (the HTTP error middleware, the worker loop), not at every layer it passes.
    """

    def __init__(self, *, slow_ms: float = 500.0) -> None:
        self.slow_ms = slow_ms

    async def handle(self, context: RequestContext[Any], call_next: NextStep) -> Any:
        started = time.perf_counter()
        extra: dict[str, Any] = {
            "request": context.request_name,
            "request_kind": "command" if context.is_command else "query",
        }
        try:
            result = await call_next()
        except DomainError as error:
            extra.update(outcome="rejected", error_code=error.code, duration_ms=_ms(started))
            logger.info("%s rejected: %s", context.request_name, error.message, extra=extra)
            raise
        except Exception as error:
            extra.update(outcome="failed", error_type=type(error).__name__, duration_ms=_ms(started))
            logger.error("%s failed: %s", context.request_name, type(error).__name__, extra=extra)
            raise
        duration = _ms(started)
        if duration >= self.slow_ms:
            extra.update(outcome="handled", duration_ms=duration, slow=True)
            logger.warning("%s handled slowly: %.0f ms", context.request_name, duration, extra=extra)
        elif logger.isEnabledFor(logging.DEBUG):
            extra.update(outcome="handled", duration_ms=duration)
            logger.debug("%s handled", context.request_name, extra=extra)
        return result


class TransactionBehavior:
    """Owns the unit of work: opens it, runs the handler, commits commands, rolls back the rest.

    Queries run inside the same unit of work (so repositories have a session) but never commit.
    The committed domain events are left in ``context.items["domain_events"]`` for outer behaviours.
    """

    async def handle(self, context: RequestContext[UnitOfWork], call_next: NextStep) -> Any:
        context.unit_of_work.read_only = not context.is_command
        async with context.unit_of_work as unit_of_work:
            result = await call_next()
            if context.is_command:
                context.items["domain_events"] = await unit_of_work.commit()
            return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
