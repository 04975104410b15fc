"""Liveness and readiness endpoints.

``/health/live`` answers as long as the process serves HTTP. ``/health/ready`` runs every
configured dependency check concurrently, each bounded by a timeout, and reports each one; any
failure makes it a 503 problem so a load balancer stops routing here. A check that finds its
dependency working but not fully (events parked in the outbox, say) returns :class:`Degraded`:
the report says so, with its details, and the service stays ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.building_blocks.api.exceptions import problem_response
from app.building_blocks.api.openapi import problem_responses

logger = logging.getLogger("app.health")


@dataclass(frozen=True)
class HealthCheck:
    """A named probe: an awaitable that returns on success and raises on failure.

    What it returns may add to the report: a mapping of numbers or short strings is shown as
    the check's ``details``; :class:`Degraded` marks the check degraded, with its details.
    """

    name: str
    probe: Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Degraded:
    """A probe's answer when its dependency works but not fully; the service stays ready."""

    details: Mapping[str, int | float | str]


Status = Literal["ok", "degraded", "fail"]


class CheckResult(BaseModel):
    """Public result of one check. The reason of a failure goes to the log, not to the caller:
    it names hosts and drivers. ``details`` are what the probe chose to show (counts)."""

    status: Status
    duration_ms: float
    details: dict[str, int | float | str] | None = None


class HealthReport(BaseModel):
    status: Status
    checks: dict[str, CheckResult] = {}


async def _run(check: HealthCheck, timeout: float) -> CheckResult:
    started = time.perf_counter()
    error: str | None = None
    answer: Any = None
    try:
        async with asyncio.timeout(timeout):
            answer = await check.probe()
    except TimeoutError:
        error = f"no answer within {timeout:g}s"
    except Exception as exc:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    duration = round((time.perf_counter() - started) * 1000, 2)
    if error:
        logger.warning("readiness check %s failed: %s", check.name, error)
        return CheckResult(status="fail", duration_ms=duration)
    if isinstance(answer, Degraded):
        return CheckResult(status="degraded", duration_ms=duration, details=dict(answer.details))
    details = dict(answer) if isinstance(answer, Mapping) else None
    return CheckResult(status="ok", duration_ms=duration, details=details)


def create_health_router(checks: Sequence[HealthCheck] = (), *, timeout: float = 2.0) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", response_model=HealthReport, summary="The process is up")
    async def live() -> HealthReport:
        return HealthReport(status="ok")

    @router.get(
        "/ready",
        response_model=HealthReport,
        summary="Every configured dependency answers",
        responses=problem_responses(503),
    )
    async def ready(request: Request) -> Any:
        results = await asyncio.gather(*(_run(check, timeout) for check in checks))
        report = {check.name: result for check, result in zip(checks, results, strict=True)}
        if all(result.status != "fail" for result in results):
            status: Status = "degraded" if any(r.status == "degraded" for r in results) else "ok"
            body = HealthReport(status=status, checks=report).model_dump(mode="json", exclude_none=True)
            return JSONResponse(body)
        failed = sorted(name for name, result in report.items() if result.status == "fail")
        return problem_response(
            request,
            503,
            detail="Not ready: " + ", ".join(failed),
            error_code="NOT_READY",
            extensions={
                "checks": {name: r.model_dump(mode="json", exclude_none=True) for name, r in report.items()}
            },
        )

    return router
