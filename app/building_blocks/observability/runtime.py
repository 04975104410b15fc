"""Gauges read on a timer: the process, its event loop, its database pool, the outbox.

A gauge set by a scrape would only tell about the gunicorn worker that answered it; sampled
every few seconds in each process, every worker shows (multiprocess mode files them per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from app.building_blocks.observability.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_MAX,
    DB_POOL_OVERFLOW,
    DB_POOL_SIZE,
    EVENT_LOOP_LAG,
    PROCESS_CPU,
    PROCESS_MEMORY,
    PROCESS_OPEN_FDS,
)

logger = logging.getLogger("app.observability")

Probe = Callable[[], Awaitable[None]]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def sample_process() -> None:
    PROCESS_CPU.set(time.process_time())
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            PROCESS_MEMORY.set(int(statm.read().split()[1]) * _PAGE_SIZE)
        PROCESS_OPEN_FDS.set(len(os.listdir("/proc/self/fd")))
    except OSError:  # not Linux: the peak is what the platform tells
        PROCESS_MEMORY.set(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def sample_pool(engine: AsyncEngine) -> None:
    """The pool's own counters (SQLite's single-connection pools have none: nothing to show)."""
    pool = engine.pool
    size, checked_out, overflow = (getattr(pool, name, None) for name in ("size", "checkedout", "overflow"))
    if not (callable(size) and callable(checked_out) and callable(overflow)):
        return
    DB_POOL_SIZE.set(size())
    DB_POOL_CHECKED_OUT.set(checked_out())
    DB_POOL_OVERFLOW.set(overflow())
    DB_POOL_MAX.set(size() + max(0, getattr(pool, "_max_overflow", 0)))


async def sample_runtime(
    stop: asyncio.Event,
    engine: AsyncEngine,
    *,
    interval: float = 5.0,
    probes: Sequence[Probe] = (),
) -> None:
    """Until ``stop``: every ``interval`` seconds, the process, loop lag, pool and ``probes``.

    The loop's lag is how much later than asked the timer fired: time in which no request could
    run. A probe that fails (the database is away) is logged at DEBUG and tried next time.
    """
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        sample_process()
        sample_pool(engine)
        for probe in probes:
            try:
                await probe()
            except Exception as error:
                logger.debug("metrics probe %s failed: %s", getattr(probe, "__name__", probe), error)
        asked = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if not stop.is_set():
            EVENT_LOOP_LAG.set(max(0.0, loop.time() - asked - interval))
