"""FastAPI dependencies as typed aliases, so endpoints read like plain functions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.building_blocks.application.mediator import Mediator


async def get_mediator(request: Request) -> Mediator[Any]:
    """The application's mediator, put on ``app.state.mediator`` by the composition root.

    ``async``: FastAPI runs a plain ``def`` dependency in a thread pool, a hop per request.
    """
    mediator: Mediator[Any] | None = getattr(request.app.state, "mediator", None)
    if mediator is None:
        raise RuntimeError("app.state.mediator is not set; wire a Mediator in the composition root")
    return mediator


MediatorDep = Annotated[Mediator[Any], Depends(get_mediator)]
