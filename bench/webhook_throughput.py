"""``python -m bench.webhook_throughput``: how many webhooks per second the service's delivery sends,
against a bare httpx loop posting the same payloads.

One run, no database, broker or Redis:

1. **A receiver** in a process of its own (``uvicorn --factory
   bench.webhook_throughput:create_receiver`` with ``bench.api_throughput``'s flags: uvloop,
   httptools, no access log), so what it costs does not share the measuring process's event loop
   or core budget: a bare ASGI app that answers every ``POST /hook`` 204, counts them and keeps the
   last one (``GET /count``, ``GET /last``).
2. **Messages**: ``--messages`` (2,000) ``UserRegisteredIntegrationEvent`` built once, each a
   :class:`ReceivedMessage` as the consumer hands it over (the event's JSON as value, the CloudEvents
   headers of ``cloud_event_headers``, a correlation id), so both senders do the same work per
   delivery from the same input.
3. **The kit**: the :class:`WebhookDelivery` that ``app.composition.build_webhooks`` builds (given a
   URL and a ``whsec_`` secret; the client's settings are ``ExternalApiConfig``'s defaults:
   retries, deadline, circuit breaker; Standard Webhooks signing per attempt; the HTTPX
   instrumentation with no tracer provider, as with tracing off), ``await delivery.deliver(message)``
   per message. **The bare loop**: one ``httpx.AsyncClient`` (same timeouts and pool limits) that,
   per message, builds the same body (``{"type","timestamp","data"}``, compact JSON), signs it with
   ``hmac``/``hashlib`` as a hand-written sender would (``webhook-id``, ``webhook-timestamp``,
   ``webhook-signature``, ``Content-Type``) and checks for a 2xx. The kit's extra headers
   (``X-Correlation-Id``, the consumer id) and its checks are part of what it costs.
4. **Check** before measuring: one delivery of each; the receiver must have counted both, both
   requests must verify with the ``standardwebhooks`` reference library and the secret, carry the
   event's id as ``webhook-id`` and the same body byte for byte.
5. **Measure** ``--rounds`` (3) rounds; in each, the kit and the bare loop back to back (which one
   goes first alternates), each ``--warmup`` (300) deliveries unmeasured, then every message
   measured: deliveries/s, **CPU per delivery of this process** (``time.process_time()``) and of the
   receiver (``/proc``). The receiver's count must grow by exactly warm-up + messages per run.
   Delivery is **sequential** by default (``--lanes 1``): the consumer hands a subscription its
   messages one at a time, in partition order, and awaits each before the next, so that is how the
   service sends webhooks; ``--lanes N`` splits the messages over N concurrent loops, for both
   senders alike (how several partitions would send at once).
6. **Ratio** kit/bare deliveries/s of each round, and their median. Target: kit >= 0.7 x bare.

It prints a table, then a summary of ``key=value`` lines with PASS/MISS; the exit code is 0 whatever
the figures, non-zero only when the benchmark itself failed (the receiver does not start, a delivery
fails, a signature does not verify, a count is off). The receiver is stopped at the end, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.building_blocks.infrastructure.http.external import ExternalApis
from app.building_blocks.infrastructure.messaging.envelope import (
    ReceivedMessage,
    cloud_event_headers,
    encode_value,
)
from app.building_blocks.infrastructure.webhooks.delivery import WebhookDelivery
from app.composition import build_webhooks
from app.contexts import CONTEXTS
from app.settings import Settings, WebhookSettings
from app.users.integration_events import UserRegisteredIntegrationEvent
from bench.api_throughput import ROOT, Server, http_call, print_report, run_until_interrupted, verdict
from bench.relay_throughput import BenchmarkError, positive_int

TARGET = 0.7  # kit deliveries/s over bare deliveries/s
KIT, BARE = "kit", "bare"
HOOK_PATH, COUNT_PATH, LAST_PATH, READY_PATH = "/hook", "/count", "/last", "/ready"
SOURCE = "/user-service"
TOPIC = "user-service.users.v1"
SECRET = "whsec_" + base64.b64encode(b"bench-webhook-throughput-secret!").decode()  # 32 bytes

Send = Callable[[ReceivedMessage], Awaitable[None]]


# --- the receiver (runs in its own uvicorn process) ----------------------------------------------


def create_receiver() -> Callable[..., Awaitable[None]]:
    """A bare ASGI app: ``POST /hook`` → 204 (counted, the last kept), ``GET /count``, ``GET /last``."""
    state: dict[str, Any] = {"count": 0, "last": None}

    async def answer(send: Callable[..., Awaitable[None]], status: int, body: bytes = b"") -> None:
        headers = [(b"content-type", b"application/json")] if body else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to set up or tear down
            while True:
                kind = (await receive())["type"]
                await send({"type": f"{kind}.complete"})  # lifespan.startup / lifespan.shutdown
                if kind == "lifespan.shutdown":
                    return
        body, more = b"", True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
        path = scope["path"]
        if scope["method"] == "POST" and path == HOOK_PATH:
            state["count"] += 1
            state["last"] = (scope["headers"], body)
            await answer(send, 204)
        elif path == COUNT_PATH:
            await answer(send, 200, json.dumps({"count": state["count"]}).encode())
        elif path == LAST_PATH and state["last"] is not None:
            headers, last_body = state["last"]
            shown = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
            await answer(send, 200, json.dumps({"headers": shown, "body": last_body.decode()}).encode())
        elif path == READY_PATH:
            await answer(send, 200, b'{"ready":true}')
        else:
            await answer(send, 404)

    return app


def received_count(server: Server) -> int:
    status, body = http_call(server.port, "GET", COUNT_PATH)
    if status != 200:
        raise server.failure(f"answered GET {COUNT_PATH} with {status}")
    count: int = json.loads(body)["count"]
    return count


def last_received(server: Server) -> tuple[dict[str, str], bytes]:
    status, body = http_call(server.port, "GET", LAST_PATH)
    if status != 200:
        raise server.failure(f"answered GET {LAST_PATH} with {status}: nothing received")
    last = json.loads(body)
    return last["headers"], last["body"].encode()


# --- the messages and the two senders ------------------------------------------------------------


def build_messages(count: int) -> list[ReceivedMessage]:
    """``count`` user registrations as the consumer receives them from the users topic."""
    messages = []
    for offset in range(count):
        user_id = uuid.uuid4()
        event = UserRegisteredIntegrationEvent(
            user_id=user_id,
            email=f"bench.user.{offset}@example.com",
            name=f"Bench User {offset}",
            correlation_id=uuid.uuid4().hex,
        )
        messages.append(
            ReceivedMessage(
                topic=TOPIC,
                partition=0,
                offset=offset,
                key=event.aggregate_id,
                value=encode_value(event),
                headers=cloud_event_headers(event, source=SOURCE),
            )
        )
    return messages


def kit_delivery(url: str) -> tuple[WebhookDelivery, ExternalApis]:
    """The delivery as the service builds it with ``WEBHOOK_URL`` and ``WEBHOOK_SECRET`` set."""
    try:
        settings = Settings(webhooks=WebhookSettings(url=url, secret=SECRET, events=None))
    except ValidationError as error:
        raise BenchmarkError(f"the service's settings (environment) are not valid: {error}") from None
    external_apis = ExternalApis({}, consumer_id=settings.service_name)
    subscription = build_webhooks(settings, external_apis, CONTEXTS)
    if subscription is None or not isinstance(subscription.handler, WebhookDelivery):
        raise BenchmarkError(f"build_webhooks built no WebhookDelivery for {url}")
    return subscription.handler, external_apis


class BareSender:
    """What a hand-written sender does: the body, an HMAC-SHA256 signature, one pooled client."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def send(self, message: ReceivedMessage) -> None:
        event_id = message.headers["ce_id"]
        body = json.dumps(
            {
                "type": message.headers["ce_type"],
                "timestamp": message.headers["ce_time"],
                "data": message.json(),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(self.key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
        response = await self.http.post(self.url, content=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise BenchmarkError(f"the bare loop's POST {event_id} was answered {response.status_code}")


# --- the measurement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    messages: int = 2000
    warmup: int = 300  # deliveries before each measured run, unmeasured
    rounds: int = 3
    lanes: int = 1  # concurrent delivery loops per sender; 1: in order, as a consumer delivers
    startup_timeout: float = 30.0


@dataclass(frozen=True)
class Run:
    round: int
    sender: str
    deliveries: int
    seconds: float
    cpu: float  # this process, seconds
    receiver_cpu: float  # the receiver process, seconds

    @property
    def dps(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_delivery(self) -> float:
        return 1000 * self.cpu / self.deliveries

    @property
    def receiver_cpu_ms_per_delivery(self) -> float:
        return 1000 * self.receiver_cpu / self.deliveries


@dataclass
class WebhookReport:
    options: Options
    runs: list[Run] = field(default_factory=list)
    received: int = 0  # every POST the receiver counted
    load: tuple[float, float] = (0.0, 0.0)

    def of(self, sender: str) -> list[Run]:
        return [run for run in self.runs if run.sender == sender]

    def median(self, sender: str, figure: str) -> float:
        return float(statistics.median(getattr(run, figure) for run in self.of(sender)))

    def ratios(self) -> list[float]:
        return [k.dps / b.dps if b.dps else 0.0 for k, b in zip(self.of(KIT), self.of(BARE), strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())


async def deliver_all(send: Send, messages: Sequence[ReceivedMessage], lanes: int) -> None:
    async def lane(share: Sequence[ReceivedMessage]) -> None:
        for message in share:
            await send(message)

    if lanes == 1:
        await lane(messages)
        return
    async with asyncio.TaskGroup() as group:
        for start in range(lanes):
            group.create_task(lane(messages[start::lanes]))


async def measure(
    send: Send,
    sender: str,
    number: int,
    messages: Sequence[ReceivedMessage],
    receiver: Server,
    options: Options,
) -> Run:
    before = await asyncio.to_thread(received_count, receiver)
    await deliver_all(send, messages[: options.warmup], options.lanes)
    receiver_cpu, cpu, started = receiver.cpu_seconds(), time.process_time(), time.perf_counter()
    await deliver_all(send, messages, options.lanes)
    seconds = time.perf_counter() - started
    cpu, receiver_cpu = time.process_time() - cpu, receiver.cpu_seconds() - receiver_cpu
    counted = await asyncio.to_thread(received_count, receiver) - before
    expected = min(options.warmup, len(messages)) + len(messages)
    if counted != expected:
        raise BenchmarkError(f"the receiver counted {counted} POSTs of the {sender} run, not {expected}")
    return Run(number, sender, len(messages), seconds, cpu, receiver_cpu)


def check_request(headers: dict[str, str], body: bytes, message: ReceivedMessage, sender: str) -> None:
    """A valid Standard Webhooks request for ``message``, per the reference library."""
    try:
        Webhook(SECRET).verify(body, headers)
    except WebhookVerificationError as error:
        raise BenchmarkError(f"the {sender}'s request does not verify: {error} (headers {headers})") from None
    if headers.get("webhook-id") != message.message_id:
        raise BenchmarkError(
            f"the {sender}'s webhook-id is {headers.get('webhook-id')}, not {message.message_id}"
        )
    sent = json.loads(body)
    if sent.get("type") != message.event_type or sent.get("data") != message.json():
        raise BenchmarkError(f"the {sender} sent {body[:300]!r}, not the event {message.message_id}")


async def check_senders(
    senders: dict[str, Send], message: ReceivedMessage, receiver: Server
) -> dict[str, tuple[dict[str, str], bytes]]:
    """One delivery of ``message`` by each sender: counted, signed validly, the same body."""
    seen = {}
    for name, send in senders.items():
        before = await asyncio.to_thread(received_count, receiver)
        await send(message)
        if await asyncio.to_thread(received_count, receiver) != before + 1:
            raise BenchmarkError(f"the receiver did not count the {name}'s delivery")
        headers, body = await asyncio.to_thread(last_received, receiver)
        check_request(headers, body, message, name)
        seen[name] = (headers, body)
    if seen[KIT][1] != seen[BARE][1]:
        raise BenchmarkError(f"the bodies differ: kit {seen[KIT][1][:300]!r}, bare {seen[BARE][1][:300]!r}")
    return seen


def progress(run: Run) -> str:
    return (
        f"[{run.round}] {run.sender:<4} {run.dps:8.1f} deliveries/s, {run.cpu_ms_per_delivery:.3f} ms CPU"
        f"/delivery (receiver {run.receiver_cpu_ms_per_delivery:.3f} ms), {run.seconds:.2f}s"
    )


async def run_benchmark(options: Options, *, out: TextIO | None = None) -> WebhookReport:
    """The receiver started, both senders checked then measured; the receiver stopped at the end."""

    def say(line: str) -> None:
        if out is not None:
            print(line, file=out, flush=True)

    directory = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    receiver = Server(
        "receiver", "bench.webhook_throughput:create_receiver", READY_PATH, directory / "receiver.log"
    )
    report = WebhookReport(options, load=(os.getloadavg()[0], 0.0))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    receiver.start(env)
    external_apis: ExternalApis | None = None
    bare: BareSender | None = None
    try:
        await receiver.wait_ready(options.startup_timeout)
        url = f"{receiver.url}{HOOK_PATH}"
        messages = build_messages(options.messages)
        delivery, external_apis = kit_delivery(url)
        bare = BareSender(url, SECRET)
        senders: dict[str, Send] = {KIT: delivery.deliver, BARE: bare.send}
        seen = await check_senders(senders, messages[0], receiver)
        say(
            f"webhook benchmark: {options.messages} UserRegistered deliveries to {url} (receiver pid"
            f" {receiver.pid}), {options.lanes} lane(s), {options.rounds} round(s), {options.warmup}"
            f" warm-up deliveries per run; kit headers: {', '.join(sorted(seen[KIT][0]))}"
        )
        for number in range(1, options.rounds + 1):
            order = (KIT, BARE) if number % 2 else (BARE, KIT)
            for name in order:
                run = await measure(senders[name], name, number, messages, receiver, options)
                report.runs.append(run)
                say(progress(run))
        report.received = await asyncio.to_thread(received_count, receiver)
    finally:
        if external_apis is not None:
            await external_apis.close()
        if bare is not None:
            await bare.http.aclose()
        await asyncio.to_thread(receiver.stop)
        report.load = (report.load[0], os.getloadavg()[0])
        if report.received:  # measured: the log goes; failed: it stays, named in the error
            await asyncio.to_thread(shutil.rmtree, directory, True)
        say("receiver stopped")
    return report


# --- output ---------------------------------------------------------------------------------------


def tables(report: WebhookReport) -> list[str]:
    lines = [
        f"{'round':>5} {'sender':<6} {'deliveries/s':>12} {'ms CPU/delivery':>15} {'receiver ms':>11}",
    ]
    lines += [
        f"{run.round:>5} {run.sender:<6} {run.dps:>12.1f} {run.cpu_ms_per_delivery:>15.3f}"
        f" {run.receiver_cpu_ms_per_delivery:>11.3f}"
        for run in report.runs
    ]
    ratios = ", ".join(f"{value:.3f}" for value in report.ratios())
    lines.append(f"ratio kit/bare per round: {ratios}; median {report.ratio:.3f}")
    lines.append(f"target kit >= {TARGET:g}x bare: {verdict(report.ratio, TARGET)}")
    return lines


def summary_lines(report: WebhookReport) -> list[str]:
    lines = []
    for sender in (KIT, BARE):
        receiver_ms = report.median(sender, "receiver_cpu_ms_per_delivery")
        lines += [
            f"{sender}_dps={report.median(sender, 'dps'):.1f}",
            f"{sender}_cpu_ms_per_delivery={report.median(sender, 'cpu_ms_per_delivery'):.3f}",
            f"{sender}_receiver_cpu_ms_per_delivery={receiver_ms:.3f}",
        ]
    lines += [
        f"ratio={report.ratio:.3f}",
        f"ratios={','.join(f'{value:.3f}' for value in report.ratios())}",
        f"messages={report.options.messages}",
        f"lanes={report.options.lanes}",
        f"rounds={report.options.rounds}",
        f"received={report.received}",
        f"loadavg_1m={report.load[0]:.2f}->{report.load[1]:.2f} on {os.cpu_count()} CPUs",
        f"target={verdict(report.ratio, TARGET)} (kit/bare >= {TARGET:g})",
    ]
    return lines


# --- command line ---------------------------------------------------------------------------------


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative integer")
    return number


def parse_args(argv: Sequence[str] | None = None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook_throughput", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--messages", type=positive_int, default=defaults.messages, help="measured per run")
    parser.add_argument("--warmup", type=non_negative_int, default=defaults.warmup, help="unmeasured per run")
    parser.add_argument("--rounds", type=positive_int, default=defaults.rounds, help="kit/bare pairs")
    parser.add_argument(
        "--lanes", type=positive_int, default=defaults.lanes, help="concurrent delivery loops (1: in order)"
    )
    args = parser.parse_args(argv)
    return Options(messages=args.messages, warmup=args.warmup, rounds=args.rounds, lanes=args.lanes)


async def amain(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    return await print_report(
        run_benchmark(options, out=sys.stdout),
        lambda report: [*tables(report), "--- summary ---", *summary_lines(report)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_until_interrupted(lambda: amain(argv), "the receiver was stopped")


if __name__ == "__main__":
    sys.exit(main())
