"""``max_token_lifetime``: a token whose ``exp`` is centuries away is refused everywhere.

Found by the attack session: a token signed with ``exp`` = 1e300 was
accepted, a credential that never expires. Now ``exp - iat`` (``exp - now``
without ``iat``) over ``max_token_lifetime`` (default a day) is refused on
connect over both transports, in ``auth:refresh`` and on the HTTP routes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import ValidationError

from clients import Refused, connect
from support import SECRET, demo_settings_for, free_port, make_token, serve
from wsgate.demo.app import create_app
from wsgate.demo.settings import DemoSettings
from wsgate.security.jwt import JwtConfig, TokenIssuer, TokenVerifier
from wsgate.stores import UserStore

PASSWORD = "correct horse battery staple"
DAY = 86_400


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    users = UserStore(tmp_path / "demo.db")
    await users.add("alice", PASSWORD)
    await users.aclose()
    port = free_port()
    async with serve(
        create_app(demo_settings_for(port, database=tmp_path / "demo.db")), port
    ) as url:
        yield url


def refresh_token(**claims: Any) -> str:
    body = jwt.decode(make_token("alice"), options={"verify_signature": False})
    body.update(token_use="refresh", fam="f", **claims)
    return jwt.encode(body, SECRET, algorithm="HS256", headers={"typ": "refresh+jwt"})


FOREVER: dict[str, Callable[[], dict[str, Any]]] = {
    # Made when the test runs, not at collection: the suite may run for many minutes.
    "exp 1e300": lambda: {"exp": 1e300},
    "exp 1e300 without iat": lambda: {"exp": 1e300, "iat": None},
    "two days without iat": lambda: {"exp": int(time.time()) + 2 * DAY, "iat": None},
    "issued two days ago, one minute left": lambda: {
        "iat": time.time() - 2 * DAY,
        "exp": int(time.time()) + 60,
    },
}


@pytest.mark.parametrize("claims", FOREVER.values(), ids=FOREVER.keys())
async def test_too_long_lived_tokens_are_refused_on_connect(
    demo: str, transport: str, claims: Callable[[], dict[str, Any]]
) -> None:
    with pytest.raises(Refused) as refused:
        async with connect(transport, demo, token=make_token("alice", **claims())):
            pass
    assert refused.value.code == "unauthorized"
    if transport == "socketio":
        assert "lifetime" in refused.value.message


async def test_a_day_long_token_is_accepted(demo: str, transport: str) -> None:
    async with connect(transport, demo, token=make_token("alice", ttl=DAY)) as client:
        assert (await client.call("whoami"))["sub"] == "alice"
    no_iat = make_token("alice", iat=None, exp=int(time.time()) + 3600)
    async with connect(transport, demo, token=no_iat) as client:
        assert (await client.call("whoami"))["sub"] == "alice"


async def test_auth_refresh_refuses_a_forever_token(demo: str, transport: str) -> None:
    async with connect(transport, demo, token=make_token("alice")) as client:
        ack = await client.call("auth:refresh", {"token": make_token("alice", exp=1e300)})
        assert ack["error"]["status"] == 401 and ack["error"]["code"] == "unauthorized"
        assert (await client.call("whoami"))["sub"] == "alice"  # still on its old token


async def test_http_routes_refuse_forever_tokens(demo: str) -> None:
    forever = make_token("alice", exp=1e300)
    async with httpx.AsyncClient() as http:
        session = await http.get(
            f"{demo}/auth/session", headers={"Cookie": f"access_token={forever}"}
        )
        assert session.json()["signed_in"] is False
        refreshed = await http.post(
            f"{demo}/auth/refresh",
            headers={"Cookie": f"refresh_token={refresh_token(exp=1e300)}"},
        )
        assert refreshed.status_code == 401
        assert refreshed.json()["error"] == {
            "status": 401,
            "code": "unauthorized",
            "message": "Token lifetime exceeds this server's maximum",
        }
        forever_refresh = refresh_token(exp=int(time.time()) + 31 * DAY)
        resp = await http.post(
            f"{demo}/auth/refresh", headers={"Cookie": f"refresh_token={forever_refresh}"}
        )
        assert resp.status_code == 401


async def test_the_maximum_follows_the_setting(tmp_path: Path, transport: str) -> None:
    port = free_port()
    settings = demo_settings_for(
        port, database=tmp_path / "d.db", max_token_lifetime=600, access_token_ttl=300
    )
    async with serve(create_app(settings), port) as url:
        with pytest.raises(Refused):
            async with connect(transport, url, token=make_token("alice", ttl=3600)):
                pass
        async with connect(transport, url, token=make_token("alice", ttl=600)) as client:
            assert (await client.call("whoami"))["sub"] == "alice"


def test_the_demo_cannot_sign_what_it_would_refuse() -> None:
    with pytest.raises(ValidationError, match="access_token_ttl"):
        DemoSettings(jwt_secret=SECRET, access_token_ttl=2 * DAY)
    with pytest.raises(ValidationError, match="refresh_token_ttl"):
        DemoSettings(jwt_secret=SECRET, refresh_token_ttl=60 * DAY)
    issuer = TokenIssuer(JwtConfig(secret=SECRET, max_lifetime=600))
    with pytest.raises(ValueError, match="longer than"):
        issuer.issue("alice", ttl=601)


def test_wsgate_token_refuses_a_ttl_over_the_maximum() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wsgate", "token", "--sub", "a", "--ttl", "1e9"],
        env={"WSGATE_JWT_SECRET": SECRET, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "longer than" in done.stderr


async def test_no_maximum_when_configured_off() -> None:
    verifier = TokenVerifier(JwtConfig(secret=SECRET, max_lifetime=None))
    principal = await verifier.verify(make_token("alice", exp=1e300))
    assert principal.sub == "alice"
    await verifier.aclose()
