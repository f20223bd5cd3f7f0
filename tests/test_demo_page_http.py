"""What the demo page asks the server for, tried with real HTTP and socket clients.

``GET /auth/session`` (the page's probe at load), the access token in the
body of ``POST /auth/refresh`` (for ``auth:refresh`` on a live socket),
``POST /auth/expired-sample`` (the "try it" panel's expired token) and
``GET /demo/limits``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clients import Refused, connect
from support import demo_settings_for, free_port, serve
from wsgate.demo.app import create_app
from wsgate.stores import UserStore

PASSWORD = "correct horse battery staple"


async def start_users(database: Path) -> None:
    users = UserStore(database)
    await users.add("alice", PASSWORD)
    await users.add("root", PASSWORD, ["admin"])
    await users.aclose()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    database = tmp_path / "demo.db"
    await start_users(database)
    port = free_port()
    async with serve(create_app(demo_settings_for(port, database=database)), port) as url:
        yield url


async def login(http: httpx.AsyncClient, url: str, user: str = "alice") -> dict[str, str]:
    """Signs in; returns the two cookies (the client does not keep them: tests pass them on)."""
    resp = await http.post(
        f"{url}/auth/login", json={"username": user, "password": PASSWORD}, headers={"Origin": url}
    )
    assert resp.status_code == 200
    return {name: resp.cookies[name] for name in ("access_token", "refresh_token")}


async def test_session_probe_answers_200_signed_out(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{demo}/auth/session")
        assert resp.status_code == 200
        assert resp.json() == {"signed_in": False, "refreshable": False}
        garbage = await http.get(f"{demo}/auth/session", headers={"Cookie": "access_token=x.y.z"})
        assert garbage.json() == {"signed_in": False, "refreshable": False}


async def test_session_probe_sees_the_cookies(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo, "root")
        both = await http.get(
            f"{demo}/auth/session",
            headers={"Cookie": f"access_token={cookies['access_token']}"},
        )
        body = both.json()
        assert body["signed_in"] is True and body["sub"] == "root" and body["roles"] == ["admin"]
        assert body["expires_at"] > time.time()
        assert "access_token" not in body  # the probe never hands out a token
        only_refresh = await http.get(
            f"{demo}/auth/session",
            headers={"Cookie": f"refresh_token={cookies['refresh_token']}"},
        )
        assert only_refresh.json() == {"signed_in": False, "refreshable": True}


async def test_session_probe_after_logout_is_signed_out(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
        out = await http.post(f"{demo}/auth/logout", headers={"Origin": demo, "Cookie": jar})
        assert out.status_code == 200
        # The revoked tokens are still validly signed; the probe checks revocation too.
        resp = await http.get(f"{demo}/auth/session", headers={"Cookie": jar})
        assert resp.json() == {"signed_in": False, "refreshable": False}


async def test_session_probe_refuses_a_foreign_origin(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        resp = await http.get(
            f"{demo}/auth/session",
            headers={
                "Origin": "http://evil.example",
                "Cookie": f"access_token={cookies['access_token']}",
            },
        )
        assert resp.status_code == 403
        assert "access-control-allow-origin" not in resp.headers


@pytest.mark.parametrize("transport", ["socketio", "websocket"])
async def test_refresh_body_token_moves_a_live_socket(demo: str, transport: str) -> None:
    """The page's in-band refresh: POST /auth/refresh, then auth:refresh with the body's token."""
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        headers = {"Origin": demo, "Cookie": f"access_token={cookies['access_token']}"}
        async with connect(transport, demo, headers=headers) as client:
            first = await client.call("whoami")
            assert first["sub"] == "alice"
            renewed = await http.post(
                f"{demo}/auth/refresh",
                headers={"Origin": demo, "Cookie": f"refresh_token={cookies['refresh_token']}"},
            )
            assert renewed.status_code == 200
            body = renewed.json()
            assert body["access_token"] == renewed.cookies["access_token"]
            ack = await client.call("auth:refresh", {"token": body["access_token"]})
            assert ack == {"expires_at": body["expires_at"]}
            assert (await client.call("whoami"))["sub"] == "alice"


async def test_refresh_body_token_is_not_a_refresh_token(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        renewed = await http.post(
            f"{demo}/auth/refresh",
            headers={"Origin": demo, "Cookie": f"refresh_token={cookies['refresh_token']}"},
        )
        token = renewed.json()["access_token"]
        again = await http.post(
            f"{demo}/auth/refresh", headers={"Origin": demo, "Cookie": f"refresh_token={token}"}
        )
        assert again.status_code == 401


@pytest.mark.parametrize("transport", ["socketio", "websocket"])
async def test_expired_sample_is_refused_with_token_expired(demo: str, transport: str) -> None:
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        resp = await http.post(
            f"{demo}/auth/expired-sample",
            headers={"Origin": demo, "Cookie": f"access_token={cookies['access_token']}"},
        )
        assert resp.status_code == 200
        sample = resp.json()
        assert sample["expired_at"] <= time.time()
        with pytest.raises(Refused) as refused:
            async with connect(transport, demo, token=sample["token"]):
                pass
        assert refused.value.code == "token_expired"


async def test_expired_sample_cannot_refresh_anything(demo: str) -> None:
    """Harmless by construction: not accepted by auth:refresh, nor as a refresh cookie."""
    async with httpx.AsyncClient() as http:
        cookies = await login(http, demo)
        access = f"access_token={cookies['access_token']}"
        sample = (
            await http.post(
                f"{demo}/auth/expired-sample", headers={"Origin": demo, "Cookie": access}
            )
        ).json()["token"]
        as_refresh = await http.post(
            f"{demo}/auth/refresh", headers={"Origin": demo, "Cookie": f"refresh_token={sample}"}
        )
        assert as_refresh.status_code == 401
        async with connect("socketio", demo, headers={"Origin": demo, "Cookie": access}) as client:
            reply = await client.call("auth:refresh", {"token": sample})
            assert reply["error"]["status"] == 401
            assert reply["error"]["code"] == "token_expired"


async def test_expired_sample_needs_a_signed_in_same_origin_caller(demo: str) -> None:
    async with httpx.AsyncClient() as http:
        anonymous = await http.post(f"{demo}/auth/expired-sample", headers={"Origin": demo})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
        cookies = await login(http, demo)
        access = f"access_token={cookies['access_token']}"
        foreign = await http.post(
            f"{demo}/auth/expired-sample",
            headers={"Origin": "http://evil.example", "Cookie": access},
        )
        assert foreign.status_code == 403
        # A signed-out (revoked) token gets no sample either.
        await http.post(f"{demo}/auth/logout", headers={"Origin": demo, "Cookie": access})
        revoked = await http.post(
            f"{demo}/auth/expired-sample", headers={"Origin": demo, "Cookie": access}
        )
        assert revoked.status_code == 401


async def test_expired_sample_refused_when_the_leeway_is_too_long(tmp_path: Path) -> None:
    """A leeway of minutes would hold the request for minutes: refused instead of waiting."""
    database = tmp_path / "leeway.db"
    await start_users(database)
    port = free_port()
    app = create_app(demo_settings_for(port, database=database, jwt_leeway=30))
    async with serve(app, port) as url, httpx.AsyncClient() as http:
        cookies = await login(http, url)
        resp = await http.post(
            f"{url}/auth/expired-sample",
            headers={"Origin": url, "Cookie": f"access_token={cookies['access_token']}"},
        )
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "sample_unavailable"


async def test_limits_follow_the_settings(tmp_path: Path) -> None:
    database = tmp_path / "limits.db"
    await start_users(database)
    port = free_port()
    app = create_app(
        demo_settings_for(port, database=database, max_message_bytes=4096, rate_limit=7.5)
    )
    async with serve(app, port) as url, httpx.AsyncClient() as http:
        resp = await http.get(f"{url}/demo/limits")
    assert resp.json() == {"max_message_bytes": 4096, "rate_limit": 7.5}
