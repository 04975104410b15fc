"""Requests the mediator dispatches. ``TResponse`` types ``await mediator.send(request)``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

TResponse = TypeVar("TResponse")


class Request(BaseModel, Generic[TResponse]):
    """A message with exactly one handler. Immutable so behaviours cannot alter it in flight."""

    model_config = ConfigDict(frozen=True, extra="forbid")
