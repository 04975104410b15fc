"""Standard response envelopes for endpoints that want one."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class SuccessResponse(BaseModel, Generic[T]):
    """``{"success": true, "data": ..., "message": ...}`` for RPC-style endpoints.

    Resource endpoints (like the users API) return the resource itself; errors never use this
    envelope, they are ProblemDetails.
    """

    success: bool = True
    data: T | None = None
    message: str | None = None
