"""Handler protocols. A handler is a plain object with one ``async handle`` method."""

from __future__ import annotations

from typing import Protocol, TypeVar

from app.building_blocks.application.requests import Request

TRequest_contra = TypeVar("TRequest_contra", bound=Request[object], contravariant=True)
TResult_co = TypeVar("TResult_co", covariant=True)


class RequestHandler(Protocol[TRequest_contra, TResult_co]):
    async def handle(self, request: TRequest_contra, /) -> TResult_co: ...


CommandHandler = RequestHandler
QueryHandler = RequestHandler
