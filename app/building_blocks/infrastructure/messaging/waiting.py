"""Waiting that a stop signal can cut short, shared by the relay and the consumers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

ABANDON_TIMEOUT = 1.0  # how long a cancelled piece of work may take to unwind before it is left


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; return whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


async def unless_stopped(work: Awaitable[object], stop: asyncio.Event, grace: float) -> bool:
    """Await ``work``; once ``stop`` is set, give it ``grace`` seconds more, then cancel it.

    Returns whether it finished (raising what it raised). For the calls into a client library
    that wait as long as a broker is away (connecting, committing, leaving a group): a stopping
    process must not wait with them.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=ABANDON_TIMEOUT)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: it failed while being given up
            return False
    finally:
        stopped.cancel()
    task.result()
    return True
