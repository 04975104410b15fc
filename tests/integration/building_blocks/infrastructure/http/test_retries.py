"""Retries against a real server: which answers and methods are retried, how long between
attempts (the policy's wait, or ``Retry-After`` capped), and the call's deadline across them."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from app.building_blocks.infrastructure.http import DeadlineExceededError, FixedDelay, NoRetry
from tests.http_servers import Reply, ScriptedServer, unused_port
from tests.integration.building_blocks.infrastructure.http.conftest import MakeClient


async def test_a_503_then_a_200_is_one_success_after_exactly_one_retry(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/orders/1", Reply(503), Reply(200, {"id": 1}))
    client = make_client()

    response = await client.get("/orders/1")

    assert response.status_code == 200
    assert response.json() == {"id": 1}
    assert server.count("/orders/1") == 2


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_every_not_now_status_is_retried(
    server: ScriptedServer, make_client: MakeClient, status: int
) -> None:
    server.reply("/x", Reply(status), Reply(200))
    response = await make_client().get("/x")
    assert (response.status_code, server.count("/x")) == (200, 2)


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 500, 501])
async def test_other_statuses_are_answered_at_once(
    server: ScriptedServer, make_client: MakeClient, status: int
) -> None:
    """A 500 is not retried either: the server failed at this request, and would again."""
    server.reply("/x", Reply(status), Reply(200))
    response = await make_client().get("/x")
    assert (response.status_code, server.count("/x")) == (status, 1)


async def test_retries_used_up_return_the_last_answer_not_an_exception(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.always("/down", Reply(503, "still down"))
    response = await make_client(retry_policy=FixedDelay(2, 0.01)).get("/down")
    assert (response.status_code, response.text) == (503, "still down")
    assert server.count("/down") == 3  # the first attempt and two retries


async def test_retry_after_in_seconds_is_honoured(server: ScriptedServer, make_client: MakeClient) -> None:
    """The policy would wait 10 ms; the server said 1 s, and the second attempt waits for it."""
    server.reply("/x", Reply(503, headers={"Retry-After": "1"}), Reply(200))
    response = await make_client().get("/x")
    assert (response.status_code, server.count("/x")) == (200, 2)
    [gap] = server.gaps("/x")
    assert 0.9 <= gap < 2.0


async def test_retry_after_as_an_http_date_is_honoured(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """An HTTP date has whole seconds: two seconds ahead means a wait of between 1 and 2 s."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server.reply("/x", Reply(429, headers={"Retry-After": when}), Reply(200))
    response = await make_client().get("/x")
    assert (response.status_code, server.count("/x")) == (200, 2)
    [gap] = server.gaps("/x")
    assert 0.9 <= gap < 2.5


async def test_a_huge_retry_after_is_capped(server: ScriptedServer, make_client: MakeClient) -> None:
    server.reply("/x", Reply(503, headers={"Retry-After": "3600"}), Reply(200))
    started = time.monotonic()
    response = await make_client(retry_after_cap=0.3).get("/x")
    assert (response.status_code, server.count("/x")) == (200, 2)
    [gap] = server.gaps("/x")
    assert 0.25 <= gap < 1.0
    assert time.monotonic() - started < 1.5


async def test_an_unreadable_retry_after_falls_back_to_the_policy(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/x", Reply(503, headers={"Retry-After": "soon"}), Reply(200))
    response = await make_client(retry_policy=FixedDelay(1, 0.2)).get("/x")
    assert response.status_code == 200
    [gap] = server.gaps("/x")
    assert 0.15 <= gap < 1.0


async def test_a_post_is_not_retried(server: ScriptedServer, make_client: MakeClient) -> None:
    server.reply("/payments", Reply(503), Reply(201))
    response = await make_client().post("/payments", json={"amount": 5})
    assert response.status_code == 503
    assert server.count("/payments") == 1


async def test_a_patch_is_not_retried_either(server: ScriptedServer, make_client: MakeClient) -> None:
    server.reply("/x", Reply(503), Reply(200))
    response = await make_client().patch("/x", json={})
    assert (response.status_code, server.count("/x")) == (503, 1)


async def test_a_post_is_retried_when_the_call_opts_in(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/payments", Reply(503), Reply(201))
    response = await make_client().post("/payments", json={"amount": 5}, retry=True)
    assert response.status_code == 201
    received = server.received("/payments")
    assert len(received) == 2
    assert [request.json() for request in received] == [{"amount": 5}, {"amount": 5}]


async def test_a_post_with_an_idempotency_key_is_retried_with_the_same_key(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/payments", Reply(503), Reply(201))
    response = await make_client().post("/payments", json={"amount": 5}, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    assert [request.headers["idempotency-key"] for request in server.received("/payments")] == ["k-1", "k-1"]


async def test_a_get_is_not_retried_when_the_call_opts_out(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.reply("/x", Reply(503), Reply(200))
    response = await make_client().get("/x", retry=False)
    assert (response.status_code, server.count("/x")) == (503, 1)


async def test_no_retry_policy_sends_once(server: ScriptedServer, make_client: MakeClient) -> None:
    server.reply("/x", Reply(503), Reply(200))
    response = await make_client(retry_policy=NoRetry()).get("/x")
    assert (response.status_code, server.count("/x")) == (503, 1)


async def test_connection_refused_is_retried_then_raised(make_client: MakeClient) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{unused_port()}", retry_policy=FixedDelay(2, 0.01))
    with pytest.raises(httpx.ConnectError):
        await client.get("/x")


async def test_a_timed_out_attempt_is_retried(server: ScriptedServer, make_client: MakeClient) -> None:
    """``timeout`` bounds one attempt; the read timeout is a transport error, retried."""
    server.reply("/slow", Reply(200, "late", delay=2), Reply(200, "in time"))
    response = await make_client(timeout=0.3, retry_policy=FixedDelay(1, 0.01)).get("/slow")
    assert (response.status_code, response.text) == (200, "in time")
    assert server.count("/slow") == 2


async def test_timeouts_used_up_raise_the_timeout(server: ScriptedServer, make_client: MakeClient) -> None:
    server.always("/slow", Reply(200, delay=2))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await make_client(timeout=0.2, retry_policy=FixedDelay(1, 0.01)).get("/slow")
    assert server.count("/slow") == 2
    assert time.monotonic() - started < 1.5


async def test_the_deadline_ends_the_retries_with_the_last_answer(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """Always 503 with ``Retry-After: 1``, a 2.5 s deadline and retries to spare: attempts at 0, 1
    and 2 s; the next wait would end past the deadline, so the call stops there and *returns*
    the last 503 (tenacity's ``stop_before_delay``; no ``DeadlineExceededError``)."""
    server.always("/busy", Reply(503, "busy", headers={"Retry-After": "1"}))
    started = time.monotonic()
    response = await make_client(deadline=2.5, retry_policy=FixedDelay(10, 0.01)).get("/busy")
    elapsed = time.monotonic() - started
    assert (response.status_code, response.text) == (503, "busy")
    assert server.count("/busy") == 3
    assert 1.8 <= elapsed <= 2.6


async def test_a_slow_answer_past_the_deadline_raises_deadline_exceeded(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.always("/slow", Reply(200, delay=3))
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await make_client(deadline=0.5, timeout=10).get("/slow")
    assert 0.4 <= time.monotonic() - started < 1.2
    assert server.count("/slow") == 1


async def test_the_deadline_counts_the_time_already_spent(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The second attempt only has what is left of the deadline: 1 s after a 0.7 s wait."""
    server.reply("/x", Reply(503, headers={"Retry-After": "0"}, delay=0.7), Reply(200, delay=3))
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await make_client(deadline=1.0, timeout=10).get("/x")
    assert 0.9 <= time.monotonic() - started < 1.5
    assert server.count("/x") == 2
