"""The access log is the operator's switch: off by default, on with ``ACCESS_LOG=true`` (a JSON
line per request), and uvicorn's ``--no-access-log`` and ``LOG_LEVEL`` are honoured either way."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import server_process


def access_lines(log: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "uvicorn.access"]


@pytest.mark.parametrize(
    ("uvicorn_args", "env", "logged"),
    [
        ((), {}, False),  # the default: no line per request
        ((), {"ACCESS_LOG": "true"}, True),
        (("--no-access-log",), {"ACCESS_LOG": "true"}, False),  # uvicorn's flag wins
        ((), {"ACCESS_LOG": "true", "LOG_LEVEL": "WARNING"}, False),  # so does the level
    ],
    ids=["default", "switched-on", "no-access-log", "level-warning"],
)
def test_the_access_log_follows_the_switch_and_uvicorns_flags(
    sqlite_url: str, tmp_path: Path, uvicorn_args: tuple[str, ...], env: dict[str, str], logged: bool
) -> None:
    log = tmp_path / "server.log"
    level = env.pop("LOG_LEVEL", "INFO")
    with server_process(sqlite_url, log, *uvicorn_args, LOG_LEVEL=level, **env) as (_process, url):
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{url}/api/v1/users/not-a-uuid", timeout=5).status_code == 400
    lines = access_lines(log)
    if logged:
        assert any("GET /health/live" in str(line["message"]) for line in lines), lines
        assert all(line["service"] == "user-service" for line in lines)
    else:
        assert lines == []
    if level == "INFO":  # whatever the switch, the service's own lines are JSON on the same stream
        assert any(json.loads(line).get("logger") == "app" for line in log.read_text().splitlines() if line)
