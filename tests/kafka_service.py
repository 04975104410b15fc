"""Where the test suite finds Kafka, and what it does when Kafka is missing (as in tests/services.py).

``KAFKA_BOOTSTRAP_SERVERS`` names the broker(s); by default the single-node broker that
``kafka/broker.sh`` (``make services``) runs on ``127.0.0.1:$KAFKA_PORT`` (9092).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.services import missing

BROKER_SCRIPT = Path(__file__).resolve().parent.parent / "kafka" / "broker.sh"


def local_bootstrap() -> str:
    return f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or local_bootstrap()


async def require_kafka(timeout: float = 3.0) -> str:
    """The bootstrap servers when one of them accepts connections; otherwise skip (or fail in CI)."""
    bootstrap = kafka_bootstrap()
    reasons = []
    for server in bootstrap.split(","):
        address = server.strip().rpartition("://")[2]
        host, _, port = address.rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, TimeoutError, ValueError) as error:
            reasons.append(f"{address}: {error or type(error).__name__}")
            continue
        writer.close()
        await writer.wait_closed()
        return bootstrap
    missing("Kafka", "; ".join(reasons))
    raise AssertionError("unreachable")  # missing() skips or fails


async def broker_script(command: str, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``kafka/broker.sh <command>``; its exit code and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(BROKER_SCRIPT),
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace")


async def broker_is_local() -> bool:
    """Whether the broker the tests use is the one kafka/broker.sh runs (so they may restart it)."""
    if kafka_bootstrap() != local_bootstrap():
        return False
    code, _ = await broker_script("status", timeout=10)
    return code == 0


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """How many partitions each of ``topics`` has (0: it does not exist). Lists, never creates."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([name for name in topics if name in existing])
    finally:
        await admin.close()
    counts = {entry["topic"]: len(entry["partitions"]) for entry in described}
    return {name: counts.get(name, 0) for name in topics}


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Best effort, bounded: a leftover test topic only costs disk."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        async with asyncio.timeout(15):
            await admin.start()
            existing = set(await admin.list_topics())
            doomed = [name for name in topics if name in existing]
            if doomed:
                await admin.delete_topics(doomed)
    except Exception:
        pass
    finally:
        await admin.close()
