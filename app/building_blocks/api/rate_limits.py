"""Rate limits on endpoints: ``dependencies=[rate_limited("registrations")]``.

The limiter for a name comes from ``app.state.rate_limiters`` (built by the composition root;
absent or ``None``: not limited). The client is its address as the server sees it
(``request.client``); behind a proxy, let the server resolve ``X-Forwarded-For`` from trusted
proxies only (uvicorn's and gunicorn's ``--forwarded-allow-ips``), never trust it here.

A success and a 429 carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers): ``"registrations";q=20;w=60`` and
``"registrations";r=<remaining>;t=<seconds until a slot frees>``; an error the endpoint raises
after the limit let the request through (a 409, say) goes out without them. Over the limit: 429
ProblemDetails with ``Retry-After``. A limiter that cannot answer (Redis down) fails open: the
request passes, a warning is logged at most once per window and counted.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Depends, Request, Response

from app.building_blocks.api.exceptions import TooManyRequestsException
from app.building_blocks.infrastructure.cache.availability import CacheAvailability
from app.building_blocks.infrastructure.cache.errors import CacheUnavailableError
from app.building_blocks.infrastructure.cache.rate_limit import RateLimitDecision, RateLimiter
from app.building_blocks.observability.metrics import RATE_LIMIT_DECISIONS


def rate_limit_headers(name: str, decision: RateLimitDecision) -> dict[str, str]:
    return {
        "RateLimit-Policy": f'"{name}";q={decision.limit};w={round(decision.period)}',
        "RateLimit": f'"{name}";r={decision.remaining};t={math.ceil(decision.reset_after)}',
    }


def rate_limited(name: str) -> Any:
    """A route dependency counting each request against the limiter called ``name``."""
    allowed = RATE_LIMIT_DECISIONS.labels(limit=name, decision="allowed")
    limited = RATE_LIMIT_DECISIONS.labels(limit=name, decision="limited")
    failed_open = RATE_LIMIT_DECISIONS.labels(limit=name, decision="failed_open")

    async def check(request: Request, response: Response) -> None:
        limiters: dict[str, RateLimiter | None] = getattr(request.app.state, "rate_limiters", {})
        limiter = limiters.get(name)
        if limiter is None:
            return
        availability: CacheAvailability | None = getattr(request.app.state, "cache_availability", None)
        if availability is not None and not availability.should_try():
            failed_open.inc()
            return
        client = request.client.host if request.client else "unknown"
        try:
            decision = await limiter.hit(client)
        except CacheUnavailableError as error:
            if availability is not None:
                availability.failed("rate_limit", error)
            failed_open.inc()
            return
        headers = rate_limit_headers(name, decision)
        if not decision.allowed:
            limited.inc()
            raise TooManyRequestsException(
                f"Too many requests: at most {decision.limit} per {decision.period:g} s; "
                f"retry in {decision.retry_after} s.",
                error_code="RATE_LIMITED",
                retry_after=decision.retry_after,
                headers=headers,
            )
        allowed.inc()
        response.headers.update(headers)

    return Depends(check)
