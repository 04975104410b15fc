"""Queries: requests that read state and never commit."""

from __future__ import annotations

from typing import Generic

from app.building_blocks.application.requests import Request, TResponse


class Query(Request[TResponse], Generic[TResponse]):
    """A question about current state (``GetUser``); its handler must not change anything."""
