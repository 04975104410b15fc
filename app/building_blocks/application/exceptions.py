"""Application-level failures that are nobody's fault in particular."""

from __future__ import annotations


class TemporarilyUnavailableError(Exception):
    """A dependency is busy or unreachable right now; the same request may succeed later.

    The API answers 503 with ``Retry-After``. Raised by adapters (a database lock or pool timeout,
    a lost connection), never by domain code.
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
