"""The correlation id of the work in progress, shared by logs, errors and outgoing calls.

Kept in a context variable so that every task started for a request (and every log line it
writes) sees the id without passing it around. Work caused by a message (a consumer sending a
command) also knows its causation id: the id of that message, stamped on the events it raises.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

CORRELATION_ID_HEADER = "X-Correlation-Id"
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
_causation_id: ContextVar[str | None] = ContextVar("causation_id", default=None)


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> Token[str | None]:
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _correlation_id.reset(token)


def get_causation_id() -> str | None:
    return _causation_id.get()


def set_causation_id(value: str | None) -> Token[str | None]:
    return _causation_id.set(value)


def reset_causation_id(token: Token[str | None]) -> None:
    _causation_id.reset(token)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def accept_correlation_id(candidate: str | None) -> str:
    """Keep a caller's id if it is safe to echo and log; otherwise mint a new one."""
    if candidate and _VALID.fullmatch(candidate):
        return candidate
    return new_correlation_id()
