"""What the HTTP client raises."""

from __future__ import annotations

from app.building_blocks.application.exceptions import TemporarilyUnavailableError


class CircuitOpenError(TemporarilyUnavailableError):
    """The target failed repeatedly; calls fail fast until its breaker lets a probe through.

    A :class:`TemporarilyUnavailableError`: an API caller gets 503 with ``Retry-After``, and a
    consumer pauses and retries the message instead of dead-lettering it.
    """

    def __init__(self, target: str, retry_after: float) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            f"calls to {target} are suspended for {seconds}s (circuit open)", retry_after=seconds
        )
        self.target = target


class AuthUnavailableError(TemporarilyUnavailableError):
    """The credentials could not be had right now (the token endpoint down or failing): a 503."""


class DeadlineExceededError(TimeoutError):
    """The call's overall deadline (across attempts and waits) ran out."""
