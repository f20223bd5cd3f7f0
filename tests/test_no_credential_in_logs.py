"""No token, cookie or Engine.IO sid in the log of ``wsgate demo``, at DEBUG, whatever clients send.

Issue 11 found, on the demo: a refused ``?token=`` logged whole by uvicorn's
access and error logs at INFO; the polling ``sid`` (a session credential)
logged on every request; the ``Authorization`` header of websocket
handshakes logged at DEBUG. This test runs the demo at ``--log-level
debug``, uses every way a credential travels (query string, header, cookie,
auth message, Socket.IO ``auth``, polling sid, login and refresh cookies),
then greps the server's whole output for each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import httpx
import pytest
import websockets

import leakcheck
from clients import connect
from support import SECRET, make_token, wsgate_process
from wsgate.log_redaction import redact_target

pytestmark = pytest.mark.timeout(90)


async def test_no_credential_reaches_the_log_at_debug(tmp_path: object) -> None:
    tokens: list[str] = []
    args = ("demo", "--database", f"{tmp_path}/demo.db", "--log-level", "debug")
    async with wsgate_process(*args, env={"WSGATE_JWT_SECRET": SECRET}) as (url, lines):
        host = url.removeprefix("http://")
        # 1. A query-string token (refused: query tokens are off) on /ws and Engine.IO.
        query_token = make_token("q")
        tokens.append(query_token)
        with contextlib.suppress(Exception):
            async with websockets.connect(f"ws://{host}/ws?token={query_token}") as ws:
                await ws.send(json.dumps({"type": "auth"}))
                await asyncio.wait_for(ws.recv(), 5)
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/socket.io/?EIO=4&transport=polling&token={query_token}")

        # 2. Authorization header and cookie on /ws; a token in the auth message.
        for headers in (
            {"Authorization": f"Bearer {make_token('h')}"},
            {"Cookie": f"access_token={make_token('c')}"},
        ):
            async with connect("websocket", url, headers=headers) as client:
                assert await client.call("ping") == "pong"
        async with connect("websocket", url, token=make_token("m")) as client:
            assert await client.call("whoami")

        # 3. Socket.IO over long-polling: the sid is in every request's query string.
        async with connect("socketio", url, token=make_token("p"), transports=["polling"]) as sio:
            sid = sio.client.eio.sid
            assert sid
            for _ in range(3):
                assert await sio.call("ping") == "pong"

        # 4. Login and refresh: the tokens the server itself issues, as cookies.
        password = next(
            m.group(1)
            for line in lines
            if (m := re.search(r"created user 'alice' with password '([^']+)'", line))
        )
        async with httpx.AsyncClient(base_url=url, headers={"Origin": url}) as http:
            login = await http.post("/auth/login", json={"username": "alice", "password": password})
            assert login.status_code == 200
            refreshed = await http.post("/auth/refresh")
            assert refreshed.status_code == 200
            issued = [c.value for c in http.cookies.jar if c.value]
            issued += [login.cookies.get(name) or "" for name in ("access_token", "refresh_token")]
        assert len([t for t in issued if t.count(".") == 2]) >= 2
        tokens.extend(t for t in issued if t)
        await asyncio.sleep(0.5)  # the last access lines are written
        output = "\n".join(lines)

    for token in tokens:
        leakcheck.remember(token)
    leakcheck.remember(sid)
    assert leakcheck.leaks_in(output) == []
    assert sid not in output
    # The paths above were logged (so the test saw what it looks for), redacted.
    assert "< Authorization: …" in output or "< authorization: …" in output.lower()
    assert "sid=…" in output
    assert "token=…" in output
    assert "EIO=4&transport=polling" in output


def test_redact_target_keeps_names_and_protocol_words() -> None:
    assert redact_target("/socket.io/?EIO=4&transport=polling&sid=abc&t=1") == (
        "/socket.io/?EIO=4&transport=polling&sid=…&t=…"
    )
    assert redact_target("/ws?token=eyJ.x.y&flag") == "/ws?token=…&flag"
    assert redact_target("/plain") == "/plain"


def test_leakcheck_finds_a_remembered_credential() -> None:
    token = make_token("leaky")  # remembered through PyJWT's encode
    assert leakcheck.leaks_in(f"GET /ws?token={token} HTTP/1.1")
    leakcheck.remember("s3cr3t-sid-abcdefghijkl")
    assert leakcheck.leaks_in("closing session s3cr3t-sid-abcdefghijkl")
    signature = token.rsplit(".", 1)[1]
    assert leakcheck.leaks_in(f"...{signature}")  # a cut token still leaks its signature
    assert leakcheck.leaks_in("conn_id=abcdefghijklmnopqrstu") == []
