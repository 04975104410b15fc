"""Hostile or broken clients against a real uvicorn server: bodies too large or too slow, JSON
with duplicated keys, list headers with empty elements.

The body tests talk raw HTTP/1.1 over asyncio sockets, so they decide exactly what is sent and
read the answer while (or instead of) sending the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.migrate import upgrade
from app.settings import DatabaseSettings
from tests.conftest import running_server
from tests.helpers import USERS, assert_problem, unique_email

MIB = 1024 * 1024
LIMIT = MIB  # the default MAX_REQUEST_BODY_BYTES, which the server keeps
DEADLINE = 1.5  # REQUEST_BODY_TIMEOUT for this server, short to keep the test short
UPLOAD = 20 * MIB
PIECE = 64 * 1024


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname
        assert parts.port
        return parts.hostname, parts.port

    def peak_rss_bytes(self) -> int:
        """VmHWM: the most resident memory the process has had so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")


def pid_listening_on(port: int) -> int:
    """The uvicorn process ``running_server`` started (its command line names the port)."""
    wanted = f"--port\0{port}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                    return int(entry)
            except OSError:
                continue
    raise AssertionError(f"no process serves port {port}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("request-limits")
    database_url = f"sqlite+aiosqlite:///{workdir / 'limits.db'}"
    upgrade(DatabaseSettings(url=database_url))
    with running_server(database_url, workdir / "server.log", REQUEST_BODY_TIMEOUT=str(DEADLINE)) as url:
        port = urlsplit(url).port
        assert port is not None
        yield Server(url=url, pid=pid_listening_on(port))


# --- raw HTTP/1.1 -------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/problem+json", self.headers
        body: dict[str, object] = json.loads(self.body)
        assert body["status"] == self.status
        return body


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, header_lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(status=int(status_line.split()[1]), headers=headers, body=body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server ends the connection (FIN, or RST for the data it left unread)."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout=10) == b""
    except ConnectionError:
        return True


def upload(server: Server, *, chunked: bool) -> tuple[RawResponse, int]:
    """Offer a 20 MB body and read the answer as soon as it comes; return it and how many body
    bytes went out. A declared length is not followed by any body (so the answer cannot depend on
    reading it); a chunked body is sent until the server answers or stops reading.

    Blocking sockets, a thread reading while the caller writes: a write that fails because the
    server answered and closed must not discard the answer (an asyncio transport drops its socket
    on a failed write, and with it what the kernel had received but the loop had not read yet).
    """
    received = bytearray()
    answered = threading.Event()
    with socket.create_connection(server.address, timeout=30) as sock:

        def read() -> None:
            try:
                while chunk := sock.recv(PIECE):
                    received.extend(chunk)
                    answered.set()
            except OSError:  # reset: the server closed with our unread upload in its buffer
                pass

        reader = threading.Thread(target=read)
        reader.start()
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(UPLOAD)}
        sock.sendall(head("POST", USERS, {"Content-Type": "application/json", **framing}))
        sent = 0
        try:
            while chunked and sent < UPLOAD and not answered.is_set():
                sock.sendall(b"%x\r\n%s\r\n" % (PIECE, b" " * PIECE))
                sent += PIECE
        except OSError:
            pass  # the server answered and closed; the answer is read below
        reader.join(timeout=30)
        assert not reader.is_alive(), "the server kept the connection open after answering"
    return parse_response(bytes(received)), sent


def parse_response(data: bytes) -> RawResponse:
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    assert len(rest) >= length, data
    return RawResponse(status=int(status_line.split()[1]), headers=headers, body=rest[:length])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_20_mb_bodies_are_refused_with_413_while_streaming(server: Server, chunked: bool) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:  # warm up: every import done
        assert (await http.post(USERS, json={"email": unique_email(), "name": "Warm"})).status_code == 201
    before = server.peak_rss_bytes()

    results = await asyncio.gather(*(asyncio.to_thread(upload, server, chunked=chunked) for _ in range(8)))

    growth = server.peak_rss_bytes() - before
    print(
        f"\npeak RSS growth for 8 concurrent 20 MB uploads ({'chunked' if chunked else 'declared'}): "
        f"{growth / MIB:.1f} MB; body bytes sent per upload: {sorted({sent for _, sent in results})}"
    )
    for response, sent in results:
        assert response.status == 413
        problem = response.problem()
        assert problem["extensions"] == {"error_code": "CONTENT_TOO_LARGE"}
        assert str(LIMIT) in str(problem["detail"])
        assert response.headers["connection"] == "close"
        assert response.headers["x-correlation-id"]
        assert sent < UPLOAD if chunked else sent == 0
    assert growth < 50 * MIB


async def test_a_body_that_stops_arriving_is_cut_off_with_408(server: Server) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    started = time.monotonic()
    writer.write(head("POST", USERS, {"Content-Type": "application/json", "Content-Length": "100"}))
    writer.write(b'{"email')  # 7 of the 100 bytes, then nothing
    await writer.drain()
    try:
        response = await asyncio.wait_for(read_response(reader), timeout=DEADLINE + 10)
        waited = time.monotonic() - started
        assert await closed_by_server(reader)
    finally:
        writer.close()
    assert response.status == 408
    assert response.problem()["extensions"] == {"error_code": "REQUEST_TIMEOUT"}
    assert response.headers["connection"] == "close"
    assert waited >= DEADLINE * 0.9  # the client had its deadline before being cut off


async def test_a_body_arriving_in_pieces_within_the_deadline_is_served(server: Server) -> None:
    body = json.dumps({"email": unique_email("pieces"), "name": "Pieces"}).encode()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(
            head("POST", USERS, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        for piece in (body[:10], body[10:]):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(DEADLINE / 5)
        writer.write(b"0\r\n\r\n")
        response = await asyncio.wait_for(read_response(reader), timeout=DEADLINE + 10)
    finally:
        writer.close()
    assert response.status == 201, response.body
    assert "connection" not in response.headers  # kept alive


async def test_the_limit_is_inclusive(server: Server) -> None:
    payload = json.dumps({"email": unique_email("limit"), "name": "Limit"}).encode()
    exactly = payload + b" " * (LIMIT - len(payload))
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(USERS, content=exactly, headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text

    # One byte more is refused from the headers alone. (A client that only reads once it has sent
    # everything, like httpx, would see the connection closed instead: see docs, "Limits".)
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(
            head("POST", USERS, {"Content-Type": "application/json", "Content-Length": str(LIMIT + 1)})
        )
        await writer.drain()
        response = await asyncio.wait_for(read_response(reader), timeout=10)
    finally:
        writer.close()
    assert response.status == 413
    assert response.problem()["extensions"] == {"error_code": "CONTENT_TOO_LARGE"}


async def test_duplicate_json_keys_are_a_validation_error(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        email = unique_email("twice")
        response = await http.post(
            USERS,
            # "\\u0061" is "a" too: keys are compared once decoded
            content=f'{{"email": "{email}", "name": "Ada", "name": "Root", "x": [{{"a": 1, "\\u0061": 2}}]}}',
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 400, "VALIDATION_ERROR")
        assert set(problem["errors"]) == {"name", "x.0.a"}
        assert all("duplicate key" in message for message in problem["errors"]["name"])
        assert (await http.get(USERS, params={"email": email})).json()["items"] == []  # not stored


async def test_if_match_with_empty_list_elements(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post(USERS, json={"email": unique_email("etag"), "name": "Etag"})
        path = created.headers["location"]

        changed = await http.patch(path, json={"name": "Etag Two"}, headers={"If-Match": ', "1" ,'})
        assert changed.status_code == 200, changed.text
        assert changed.headers["etag"] == '"2"'

        stale = await http.patch(path, json={"name": "Lost"}, headers={"If-Match": ',, "1",'})
        assert_problem(stale, 412, "VERSION_MISMATCH")
        empty = await http.patch(path, json={"name": "Lost"}, headers={"If-Match": ", ,"})
        assert_problem(empty, 400, "INVALID_PRECONDITION_HEADER")
