"""Revocation reaching live sockets: demo logout, the ``wsgate revoke`` CLI, and restarts.

The CLI test runs ``python -m wsgate demo`` as a real subprocess and revokes
from a second process through the shared SQLite file, as an operator would.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import Refused, connect
from support import (
    SECRET,
    demo_settings_for,
    free_port,
    make_token,
    serve,
    settings_for,
    wsgate_process,
)
from wsgate import App, token_issuer
from wsgate.demo.app import create_app
from wsgate.demo.gateways import Chat
from wsgate.stores import SqliteRevocationStore, UserStore

BOUND = 1.0
SLACK = 0.4


async def assert_cut_within(client: Any, since: float, notice: str = "auth:revoked") -> None:
    data = await client.next_event(notice, timeout=BOUND + 3)
    await client.wait_closed(timeout=3)
    assert data == {"reason": "token_revoked"}
    assert time.time() - since <= BOUND + SLACK, time.time() - since


async def test_logout_cuts_the_live_socket_of_its_token(transport: str, tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "demo.db"
    users = UserStore(database)
    await users.add("alice", "correct horse battery", ())
    await users.aclose()
    app = create_app(demo_settings_for(port, database=database))
    try:
        async with serve(app, port) as url, httpx.AsyncClient(base_url=url) as http:
            login = await http.post(
                "/auth/login", json={"username": "alice", "password": "correct horse battery"}
            )
            assert login.status_code == 200
            cookie = f"access_token={login.cookies['access_token']}"
            async with (
                connect(transport, url, headers={"Cookie": cookie}) as client,
                connect(transport, url, token=make_token("alice")) as other_session,
            ):
                assert (await client.call("whoami"))["sub"] == "alice"
                started = time.time()
                logout = await http.post("/auth/logout", headers={"Cookie": cookie})
                assert logout.status_code == 200 and logout.json()["revoked"] >= 1
                await assert_cut_within(client, started)
                # Logout ends that token only, not the user's other sessions.
                assert await other_session.call("ping") == "pong"
            with pytest.raises(Refused) as refused:
                async with connect(transport, url, headers={"Cookie": cookie}):
                    pass
            assert refused.value.code == "token_revoked"
    finally:
        assert app.revocations is not None
        await app.revocations.aclose()


async def test_revocations_survive_a_restart(transport: str, tmp_path: Path) -> None:
    database = tmp_path / "revocations.db"
    one = make_token("alice", jti="jti-before-restart")
    other = make_token("bob", iat=time.time() - 1)

    store = SqliteRevocationStore(database)
    await store.revoke_jti("jti-before-restart", expires_at=time.time() + 300)
    await store.revoke_sub("bob", expires_at=time.time() + 300)
    await store.aclose()

    store = SqliteRevocationStore(database)
    port = free_port()
    try:
        async with serve(App([Chat()], settings_for(port), revocations=store), port) as url:
            for token in (one, other):
                with pytest.raises(Refused) as refused:
                    async with connect(transport, url, token=token):
                        pass
                assert refused.value.code == "token_revoked"
            async with connect(transport, url, token=make_token("alice")) as fine:
                assert await fine.call("ping") == "pong"
    finally:
        await store.aclose()


# -- the CLI against a running demo ---------------------------------------------------------


async def wsgate_cli(*args: str) -> float:
    """Run ``wsgate ARGS`` in a new process; returns when it exited."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wsgate", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, out
    return time.time()


async def test_cli_revoke_cuts_sockets_of_a_running_demo(transport: str, tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    issuer = token_issuer(settings_for(0))
    env = {"WSGATE_JWT_SECRET": SECRET}
    async with wsgate_process("demo", "--database", str(database), env=env) as (url, _):
        async with (
            connect(transport, url, token=make_token("alice", jti="cli-jti")) as by_jti,
            connect(transport, url, token=make_token("bob", iat=time.time() - 1)) as by_sub,
        ):
            exited = await wsgate_cli("revoke", "--jti", "cli-jti", "--database", str(database))
            await assert_cut_within(by_jti, exited)
            assert await by_sub.call("ping") == "pong"

            exited = await wsgate_cli("revoke", "--sub", "bob", "--database", str(database))
            await assert_cut_within(by_sub, exited)

        # Logging in again right after `revoke --sub` gives a token that is not revoked.
        fresh, _ = issuer.issue("bob", ttl=60)
        async with connect(transport, url, token=fresh) as again:
            assert (await again.call("whoami"))["sub"] == "bob"
