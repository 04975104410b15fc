"""Commands: requests that change state. The transaction behaviour commits their unit of work."""

from __future__ import annotations

from typing import Generic

from app.building_blocks.application.requests import Request, TResponse


class Command(Request[TResponse], Generic[TResponse]):
    """Intent to change state, named in the imperative (``RegisterUser``)."""
