"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

USERS = "/api/v1/users"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "trace_id"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def assert_problem(response: httpx.Response, status: int, error_code: str | None = None) -> dict[str, Any]:
    """The response is RFC 9457 ProblemDetails with the seed's fields and the given status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("https://"), body
    assert body["trace_id"], body
    assert body["instance"] == response.request.url.path
    if error_code is not None:
        assert body["extensions"]["error_code"] == error_code, body
    return body
