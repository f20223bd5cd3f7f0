"""Refresh-token rotation against a real ``wsgate demo``: atomic, with reuse detection.

Found by the attack session: twenty concurrent ``POST /auth/refresh`` with
one refresh cookie all got 200 and twenty distinct, usable refresh tokens.
Now exactly one wins; a used token presented again ends the session: the
family's newest token is refused and the user's live sockets are cut.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from clients import Refused, connect
from support import SECRET, make_token, wsgate_process
from wsgate.stores import UserStore

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    database = tmp_path / "demo.db"
    users = UserStore(database)
    await users.add("alice", PASSWORD)
    await users.add("bob", PASSWORD)
    await users.aclose()
    env = {"WSGATE_JWT_SECRET": SECRET, "WSGATE_DATABASE": str(database)}
    async with wsgate_process("demo", env=env) as (url, _output):
        yield url


async def login(http: httpx.AsyncClient, url: str, user: str = "alice") -> httpx.Response:
    resp = await http.post(
        f"{url}/auth/login", json={"username": user, "password": PASSWORD}, headers={"Origin": url}
    )
    assert resp.status_code == 200, resp.text
    return resp


async def refresh(http: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    return await http.post(
        f"{url}/auth/refresh", headers={"Origin": url, "Cookie": f"refresh_token={token}"}
    )


async def test_twenty_concurrent_refreshes_one_wins_and_the_replay_ends_the_session(
    demo: str, transport: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        first = await login(http, demo)
        access, stolen = first.cookies["access_token"], first.cookies["refresh_token"]
        bob = (await login(http, demo, "bob")).cookies["access_token"]
        async with (
            connect(transport, demo, headers={"Cookie": f"access_token={access}"}) as live,
            connect(transport, demo, headers={"Cookie": f"access_token={bob}"}) as other,
        ):
            assert await live.call("whoami") == {"sub": "alice", "roles": []}
            answers = await asyncio.gather(*(refresh(http, demo, stolen) for _ in range(20)))
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200] + [401] * 19, statuses
            winner = next(r for r in answers if r.status_code == 200)
            newest = winner.cookies["refresh_token"]
            assert {r.json()["error"]["code"] for r in answers if r.status_code == 401} == {
                "token_revoked"
            }

            replay = await refresh(http, demo, stolen)
            assert replay.status_code == 401
            assert replay.json()["error"]["code"] == "token_revoked"
            # The newest token of the family, and its access token, are dead too.
            assert (await refresh(http, demo, newest)).status_code == 401
            await live.wait_closed(timeout=10)  # the revocation follower cuts it (<= 1 s)
            assert not live.connected
            # Another user's socket is untouched.
            assert await other.call("whoami") == {"sub": "bob", "roles": []}
        with pytest.raises(Refused) as refused:
            async with connect(
                transport,
                demo,
                headers={"Cookie": f"access_token={winner.cookies['access_token']}"},
            ):
                pass
        assert refused.value.code == "token_revoked"
        # The real user signs in again at once.
        again = await login(http, demo)
        async with connect(
            transport, demo, headers={"Cookie": f"access_token={again.cookies['access_token']}"}
        ) as fresh:
            assert await fresh.call("whoami") == {"sub": "alice", "roles": []}


async def test_a_sequential_replay_of_a_used_token_revokes_the_family(demo: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        r0 = (await login(http, demo)).cookies["refresh_token"]
        step = await refresh(http, demo, r0)
        assert step.status_code == 200
        r1 = step.cookies["refresh_token"]
        step = await refresh(http, demo, r1)  # the rightful holder keeps rotating
        assert step.status_code == 200
        r2 = step.cookies["refresh_token"]
        assert len({r0, r1, r2}) == 3
        replay = await refresh(http, demo, r1)  # a thief with an old copy
        assert replay.status_code == 401
        assert "already used" in replay.json()["error"]["message"]
        assert (await refresh(http, demo, r2)).status_code == 401


async def test_logout_revokes_the_refresh_family(demo: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        cookies = (await login(http, demo)).cookies
        r0 = cookies["refresh_token"]
        out = await http.post(
            f"{demo}/auth/logout",
            headers={"Origin": demo, "Cookie": f"refresh_token={r0}"},
        )
        assert out.status_code == 200
        assert (await refresh(http, demo, r0)).status_code == 401


async def test_a_refresh_token_without_a_family_is_refused(demo: str) -> None:
    """A signed refresh token that no login started (no ``fam``) is not a session."""
    payload = jwt.decode(make_token("alice", ttl=600), options={"verify_signature": False})
    payload["token_use"] = "refresh"
    token = jwt.encode(payload, SECRET, algorithm="HS256", headers={"typ": "refresh+jwt"})
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await refresh(http, demo, token)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"


async def test_two_nodes_on_redis_race_one_refresh_token(
    tmp_path: Path, redis_url: str, transport: str
) -> None:
    """Families in Redis: the race is split over two demo nodes; the cut reaches the other."""
    name = f"u{uuid.uuid4().hex[:12]}"  # the Redis database is shared: a name no one else uses
    database = tmp_path / "demo.db"
    users = UserStore(database)
    await users.add(name, PASSWORD)
    await users.aclose()
    env = {
        "WSGATE_JWT_SECRET": SECRET,
        "WSGATE_DATABASE": str(database),
        "WSGATE_REDIS_URL": redis_url,
    }
    async with (
        wsgate_process("demo", env=env) as (node1, _),
        wsgate_process("demo", env=env) as (node2, _),
        httpx.AsyncClient(timeout=30) as http,
    ):
        first = await login(http, node1, name)
        access, stolen = first.cookies["access_token"], first.cookies["refresh_token"]
        async with connect(transport, node2, headers={"Cookie": f"access_token={access}"}) as live:
            assert (await live.call("whoami"))["sub"] == name
            answers = await asyncio.gather(
                *(refresh(http, node, stolen) for node in (node1, node2) * 10)
            )
            assert sorted(r.status_code for r in answers) == [200] + [401] * 19
            newest = next(r for r in answers if r.status_code == 200).cookies["refresh_token"]
            assert (await refresh(http, node2, newest)).status_code == 401
            await live.wait_closed(timeout=10)
            assert not live.connected
